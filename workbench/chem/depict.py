"""2D depictions (RDKit SVG) and the HTML cards/grids used for notebook display."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from html import escape
from typing import TYPE_CHECKING

from rdkit import Chem
from rdkit.Chem import rdDepictor
from rdkit.Chem.Draw import rdMolDraw2D

if TYPE_CHECKING:  # pragma: no cover
    from workbench.chem.molecule import Molecule

__all__ = ["to_svg", "molecule_card", "grid_html", "CARD_PROPERTIES"]

CARD_PROPERTIES = ("mw", "clogp", "tpsa", "qed", "sa")


@functools.lru_cache(maxsize=4096)
def _svg_for(smiles: str, width: int, height: int, highlight: tuple[int, ...]) -> str:
    mol = Chem.MolFromSmiles(smiles)
    if mol is None:  # pragma: no cover - identities always parse
        return ""
    rdDepictor.Compute2DCoords(mol)
    drawer = rdMolDraw2D.MolDraw2DSVG(width, height)
    opts = drawer.drawOptions()
    opts.clearBackground = False
    rdMolDraw2D.PrepareAndDrawMolecule(drawer, mol, highlightAtoms=list(highlight))
    drawer.FinishDrawing()
    svg = drawer.GetDrawingText()
    return svg[svg.find("<svg") :] if "<svg" in svg else svg  # strip the XML header so it inlines in HTML


def to_svg(mol: Molecule, size: tuple[int, int] = (250, 200), highlight: Iterable[int] | None = None) -> str:
    """An SVG depiction of the heavy-atom graph (cached by SMILES and size)."""
    return _svg_for(mol.smiles, int(size[0]), int(size[1]), tuple(sorted(highlight or ())))


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return escape(str(value))


def _badge(mol: Molecule) -> str:
    report = mol.meta.get("validation")
    if report is None:
        return ""
    if report.ok and not report.warnings:
        return "<span style='color:#2e7d32' title='valid'>✔ valid</span>"
    if report.ok:
        tip = escape("; ".join(f.message for f in report.warnings)[:300])
        return f"<span style='color:#ef6c00' title='{tip}'>⚠ {len(report.warnings)} warning(s)</span>"
    tip = escape("; ".join(f.message for f in report.errors)[:300])
    return f"<span style='color:#c62828' title='{tip}'>✘ invalid</span>"


def molecule_card(
    mol: Molecule,
    properties: Sequence[str] = CARD_PROPERTIES,
    size: tuple[int, int] = (220, 170),
    extra: dict[str, object] | None = None,
) -> str:
    """An HTML card: depiction, SMILES, a few properties, validation badge, optional extra fields."""
    rows = "".join(f"<tr><td>{escape(p)}</td><td>{_fmt(mol.prop(p))}</td></tr>" for p in properties)
    for key, value in (extra or {}).items():
        rows += f"<tr><td>{escape(str(key))}</td><td>{_fmt(value)}</td></tr>"
    title = f"<div><b>{escape(mol.name)}</b></div>" if mol.name else ""
    trace = mol.meta.get("trace")
    details = (
        f"<details><summary>reasoning</summary><pre style='white-space:pre-wrap;font-size:10px'>"
        f"{escape(str(trace))}</pre></details>"
        if trace
        else ""
    )
    return (
        "<div style='display:inline-block;vertical-align:top;margin:4px;padding:4px;border:1px solid #ddd;"
        f"width:{size[0] + 10}px;font-size:11px'>{title}{to_svg(mol, size)}"
        f"<div style='word-break:break-all'><code>{escape(mol.smiles)}</code></div>{_badge(mol)}"
        f"<table style='font-size:11px'>{rows}</table>{details}</div>"
    )


def grid_html(mols: Sequence[Molecule], max_items: int = 48, properties: Sequence[str] = CARD_PROPERTIES) -> str:
    """An HTML grid of molecule cards (first ``max_items``), with a count line."""
    shown = list(mols)[:max_items]
    cards = "".join(molecule_card(m, properties) for m in shown)
    more = f" (showing {len(shown)})" if len(mols) > len(shown) else ""
    return f"<div><div><b>{len(mols)} molecule(s)</b>{more}</div><div>{cards}</div></div>"
