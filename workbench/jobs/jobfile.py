"""Job files: a design campaign declared in YAML or TOML, validated before anything runs.

Errors name the field and, for YAML, the line. ``version`` keeps old files working: version-1 files are
read by every later release.

>>> from workbench.jobs.jobfile import JobConfig
>>> job = JobConfig.from_text('''
... version: 1
... name: amides
... spec: {require: ["C(=O)N"], properties: {mw: [200, 350]}}
... proposers: [{type: library, source: moses-test, n: 50}]
... ''')
>>> job.name, job.proposers[0].n, job.embed.enabled
('amides', 50, True)
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

import tomllib
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from workbench.chem.rules import RuleSet
from workbench.chem.spec import DesignSpec
from workbench.errors import JobFileError, SpecError

__all__ = ["JobConfig", "load_job", "CURRENT_VERSION", "PROPOSER_TYPES"]

CURRENT_VERSION = 1
SUPPORTED_VERSIONS = (1,)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LibraryProposer(_Strict):
    """Candidates from a bundled corpus or a SMILES/SDF file (virtual screening of a library)."""

    type: Literal["library"] = "library"
    source: str = "moses-test"  # a corpus name from workbench.data, or a file path
    n: int = Field(100, gt=0)
    seed: int | None = None


class DiffusionProposer(_Strict):
    """Property-targeted sampling with the diffusion engine."""

    type: Literal["diffusion"] = "diffusion"
    n: int = Field(64, gt=0)
    targets: dict[str, float] = {}
    guidance: dict[str, Any] = {"type": "c2fg", "w0": 4.0, "lam": 3.0}
    steps: int = Field(25, gt=0, le=1000)
    checkpoint: str | None = None
    seed: int | None = None


class ReasoningProposer(_Strict):
    """Spec-driven proposals from the reasoning engine."""

    type: Literal["reasoning"] = "reasoning"
    n: int = Field(16, gt=0)
    backend: str = "compact"
    seed: int | None = None


Proposer = Annotated[LibraryProposer | DiffusionProposer | ReasoningProposer, Field(discriminator="type")]
PROPOSER_TYPES = ("library", "diffusion", "reasoning")


class EmbedStage(_Strict):
    enabled: bool = True
    n_conformers: int = Field(3, gt=0, le=100)
    max_heavy_atoms: int = Field(80, gt=0)


class SimulateStage(_Strict):
    enabled: bool = False
    potential: str = "workbench-organic"
    protocol: Literal["nvt", "nve", "minimize"] = "nvt"
    ps: float = Field(1.0, gt=0)
    timestep_fs: float = Field(0.5, gt=0)
    temperature: float = Field(300.0, gt=0)
    minimise_iterations: int = Field(500, ge=1)  # L-BFGS iterations before the dynamics (OpenMM's maxIterations)


class ScoreStage(_Strict):
    """score = Σ weight·property  +  spec_weight · (fraction of spec constraints met)."""

    weights: dict[str, float] = {"qed": 1.0}
    spec_weight: float = 1.0


class HealthChecks(_Strict):
    """Stop (or warn) when a run collapses: validity or uniqueness below a threshold."""

    min_validity: float = Field(0.5, ge=0, le=1)
    min_uniqueness: float = Field(0.5, ge=0, le=1)
    min_items: int = Field(20, gt=0)  # judge only after this many candidates
    action: Literal["stop", "warn"] = "warn"


class JobConfig(_Strict):
    """A validated design campaign."""

    version: int = CURRENT_VERSION
    name: str = "campaign"
    seed: int = 0
    spec: DesignSpec = DesignSpec()
    proposers: list[Proposer] = Field(default_factory=lambda: [LibraryProposer()], min_length=1)
    rules: dict[str, Any] | None = None
    filter_invalid: bool = True
    filter_spec: bool = False
    embed: EmbedStage = EmbedStage()
    simulate: SimulateStage = SimulateStage()
    score: ScoreStage = ScoreStage()
    health: HealthChecks = HealthChecks()

    @field_validator("version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v not in SUPPORTED_VERSIONS:
            newest = max(SUPPORTED_VERSIONS)
            hint = "upgrade the workbench" if v > newest else "this version was never released"
            raise ValueError(
                f"job file version {v} is not supported (this workbench reads {SUPPORTED_VERSIONS}); {hint}"
            )
        return v

    @field_validator("spec", mode="before")
    @classmethod
    def _spec(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return DesignSpec.from_dict(v)
        return v

    @field_validator("rules")
    @classmethod
    def _rules(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None:
            RuleSet.from_dict(v)  # raises SpecError naming the rule
        return v

    def ruleset(self) -> RuleSet:
        return RuleSet.from_dict(self.rules)

    @classmethod
    def from_text(cls, text: str, fmt: str = "yaml", source: str = "<job>") -> JobConfig:
        """Parse YAML or TOML text (safe loaders only) and validate it."""
        try:
            data = tomllib.loads(text) if fmt == "toml" else yaml.safe_load(text)
        except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
            raise JobFileError(f"{source}: not valid {fmt.upper()}: {exc}") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise JobFileError(f"{source}: a job file must be a mapping of fields, got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except SpecError as exc:
            loc = ("spec", *exc.field.split(".")) if not exc.field.startswith("rules") else tuple(exc.field.split("."))
            line = _line_of(text, loc, fmt)
            raise JobFileError(f"{source}{_at(line)}: field {'.'.join(loc)}: {exc.reason}") from None
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = tuple(str(p) for p in err.get("loc", ()) if str(p) not in PROPOSER_TYPES)  # drop union tags
            cause = err.get("ctx", {}).get("error")
            if isinstance(cause, SpecError):
                if cause.field.startswith("rules"):
                    inner = tuple(cause.field.split("."))
                else:
                    inner = ("spec", *cause.field.split(".")) if loc[:1] == ("spec",) else loc
                line = _line_of(text, inner, fmt)
                raise JobFileError(f"{source}{_at(line)}: field {'.'.join(inner)}: {cause.reason}") from None
            line = _line_of(text, loc, fmt)
            message = err.get("msg", "invalid value")
            raise JobFileError(f"{source}{_at(line)}: field {'.'.join(loc) or '(top level)'}: {message}") from None

    def to_dict(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        data["spec"] = self.spec.to_dict()
        return data


def _at(line: int | None) -> str:
    return f", line {line}" if line else ""


def load_job(path: str | os.PathLike) -> JobConfig:
    """Load a job file (``.yaml``/``.yml``/``.json`` or ``.toml``)."""
    path = str(path)
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise JobFileError(f"{path}: cannot read job file ({exc.strerror})") from None
    fmt = "toml" if path.endswith(".toml") else "yaml"
    return JobConfig.from_text(text, fmt=fmt, source=path)


def _line_of(text: str, loc: tuple, fmt: str) -> int | None:
    """1-based line of the deepest node of ``loc`` that exists in the document."""
    if fmt == "toml":
        key = next((str(k) for k in reversed(loc) if not str(k).isdigit()), None)
        if key:
            for i, line in enumerate(text.splitlines(), 1):
                if line.strip().startswith((f"{key} ", f"{key}=", f"[{key}", f"[[{key}")):
                    return i
        return None
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for key in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if str(k.value) == str(key)), None)
        elif isinstance(node, yaml.SequenceNode) and str(key).isdigit() and int(key) < len(node.value):
            node = node.value[int(key)]
        else:
            node = None
    if node is not None:
        line = node.start_mark.line + 1
    return line
