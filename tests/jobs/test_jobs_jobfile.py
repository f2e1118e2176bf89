from __future__ import annotations

import pytest

from workbench.errors import JobFileError
from workbench.jobs import JobConfig, load_job


@pytest.mark.parametrize(
    "text,where",
    [
        ("version: 1\nname: x\nproposers:\n  - type: library\n    n: -3\n", "line 5: field proposers.0.n"),
        ("version: 1\nspec:\n  properties:\n    mw: [400, 100]\n", "line 4: field spec.properties.mw"),
        ("version: 1\nspec:\n  require: ['C(=O']\n", "field spec.require[0]"),
        ("version: 99\n", "line 1: field version"),
        ("proposers:\n  - type: quantum\n", "line 2: field proposers.0"),
        ("colour: red\n", "line 1: field colour"),
        ("rules:\n  pains: {foo: 1}\n", "field rules.pains.foo"),
        ("rules:\n  nonsense: true\n", "field rules.nonsense"),
        ("name: [unclosed\n", "not valid YAML"),
        ("- a\n- b\n", "must be a mapping"),
    ],
)
def test_malformed_job_files_name_the_field_and_line(text, where):
    with pytest.raises(JobFileError) as info:
        JobConfig.from_text(text, source="job.yaml")
    assert where in str(info.value) and str(info.value).startswith("job.yaml")


def test_toml_job_file(tmp_path):
    path = tmp_path / "job.toml"
    path.write_text('version = 1\nname = "t"\n[[proposers]]\ntype = "library"\nn = 5\n[embed]\nenabled = false\n')
    job = load_job(path)
    assert job.name == "t" and job.proposers[0].n == 5 and not job.embed.enabled
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "t"\n[[proposers]]\ntype = "library"\nn = 0\n')
    with pytest.raises(JobFileError, match="proposers"):
        load_job(bad)


def test_missing_file_and_defaults(tmp_path):
    with pytest.raises(JobFileError, match="cannot read"):
        load_job(tmp_path / "nope.yaml")
    job = JobConfig.from_text("")
    assert job.version == 1 and job.proposers[0].type == "library"


def test_version_1_files_keep_working():
    job = JobConfig.from_text("version: 1\nname: old\n")
    assert job.to_dict()["version"] == 1


def test_example_job_file_is_valid():
    from pathlib import Path

    job = load_job(Path(__file__).resolve().parents[2] / "examples" / "demo.yaml")
    assert job.spec.require == ("C(=O)N",)


def test_unknown_proposer_source_lists_corpora(tmp_path):
    from workbench.jobs import run

    job = JobConfig.from_text("name: s\nproposers: [{type: library, source: zinc-all, n: 3}]\n")
    with pytest.raises(JobFileError, match="moses-test"):
        run(job, str(tmp_path / "r.db"), progress=False)
