"""Chemistry-core throughput: full default-rule validation of MOSES molecules on one core.

    python benchmarks/chem.py [--n 5000]

Figures (all measured in this one run, one process, one thread):
- validate_mols_per_s: validate(smiles) with the full default rule set, cold (no cached reports).
- the same split into stages: parse+sanitize only, and the rule set on already-parsed Molecules.
- repeated property access on cached Molecules versus computing them fresh (the caching ratio).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from rdkit import Chem  # noqa: E402

from benchmarks import _results  # noqa: E402
from workbench.chem import DEFAULT_RULES, Molecule, RuleSet, rules, validate  # noqa: E402
from workbench.data import load_corpus  # noqa: E402

PROPS = ("mw", "clogp", "tpsa", "hbd", "hba", "rotb", "rings", "qed", "sa")


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    smiles = load_corpus("moses-test", limit=args.n, seed=args.seed)
    validate("CCO")  # build the FilterCatalogs once, outside the timings

    rules._validate_text.cache_clear()
    t0 = time.perf_counter()
    reports = [validate(s, DEFAULT_RULES) for s in smiles]
    t_cold = time.perf_counter() - t0
    n_ok = sum(r.ok for r in reports)

    t0 = time.perf_counter()
    for s in smiles:
        Chem.MolFromSmiles(s)
    t_rdkit_parse = time.perf_counter() - t0

    rules._validate_text.cache_clear()
    t0 = time.perf_counter()
    for s in smiles:
        validate(s, RuleSet.none())
    t_sanitize = time.perf_counter() - t0

    mols = [Molecule(s) for s in smiles]
    t0 = time.perf_counter()
    for m in mols:
        validate(m)
    t_rules = time.perf_counter() - t0
    t0 = time.perf_counter()
    for m in mols:
        validate(m)
    t_cached = time.perf_counter() - t0

    no_alerts = DEFAULT_RULES.disable("pains", "brenk", "nih")
    rules._validate_text.cache_clear()
    t0 = time.perf_counter()
    for s in smiles:
        validate(s, no_alerts)
    t_no_alerts = time.perf_counter() - t0

    # alert screen versus RDKit's plain FilterCatalog, same molecules, same run
    from rdkit.Chem import FilterCatalog

    from workbench.chem.alerts import alert_catalog, molecule_arrays

    params = FilterCatalog.FilterCatalogParams()
    for name in ("PAINS", "BRENK", "NIH"):
        params.AddCatalog(getattr(FilterCatalog.FilterCatalogParams.FilterCatalogs, name))
    plain = FilterCatalog.FilterCatalog(params)
    sub = [Chem.MolFromSmiles(s) for s in smiles[:1000]]
    t0 = time.perf_counter()
    plain_hits = [sorted(e.GetDescription() for e in plain.GetMatches(m)) for m in sub]
    t_plain = time.perf_counter() - t0
    t0 = time.perf_counter()
    screened_hits = []
    for m in sub:
        arrays = molecule_arrays(m)
        screened_hits.append(
            sorted(d for name in ("PAINS", "BRENK", "NIH") for d, _ in alert_catalog(name).matches(m, arrays))
        )
    t_screened = time.perf_counter() - t0

    fresh = [Molecule(s) for s in smiles[:1000]]
    t0 = time.perf_counter()
    for m in fresh:
        m.properties(PROPS)
    t_props_fresh = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(10):
        for m in fresh:
            m.properties(PROPS)
    t_props_cached = (time.perf_counter() - t0) / 10

    figures = {
        "validate_mols_per_s": round(_rate(len(smiles), t_cold), 1),
        "n_molecules": len(smiles),
        "corpus": f"moses-test (uniform sample, seed {args.seed})",
        "rules": DEFAULT_RULES.ids,
        "fraction_ok": round(n_ok / len(smiles), 4),
        "rdkit_parse_mols_per_s": round(_rate(len(smiles), t_rdkit_parse), 1),
        "sanitize_rules_only_mols_per_s": round(_rate(len(smiles), t_sanitize), 1),
        "rules_on_parsed_molecules_mols_per_s": round(_rate(len(smiles), t_rules), 1),
        "validate_cached_mols_per_s": round(_rate(len(smiles), t_cached), 1),
        "validate_without_alert_catalogs_mols_per_s": round(_rate(len(smiles), t_no_alerts), 1),
        "alerts_plain_filtercatalog_mols_per_s": round(_rate(len(sub), t_plain), 1),
        "alerts_screened_mols_per_s": round(_rate(len(sub), t_screened), 1),
        "alert_screen_speedup": round(t_plain / t_screened, 2),
        "alert_screen_identical_to_filtercatalog": plain_hits == screened_hits,
        "validate_cold_vs_rdkit_parse_time_ratio": round(t_cold / t_rdkit_parse, 2),
        "properties_fresh_mols_per_s": round(_rate(len(fresh), t_props_fresh), 1),
        "properties_cached_mols_per_s": round(_rate(len(fresh), t_props_cached), 1),
        "property_cache_speedup": round(t_props_fresh / t_props_cached, 1),
        "threads": 1,
        "target_validate_mols_per_s": 2000,
    }
    path = _results.write("chem", figures)
    for k, v in figures.items():
        if k != "rules":
            print(f"{k:45s} {v}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
