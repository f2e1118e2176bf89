"""The campaign report plots the simulation observables when the job ran MD, and says so when it did not."""

from workbench.jobs.report import _simulation_plots


def test_simulation_section_plots_observables():
    records = [
        {
            "score": 1.0 + i / 10,
            "sim_rmsd_a": 0.1 * i,
            "sim_mean_temperature_k": 290.0 + i,
            "sim_energy_drift_mev_per_atom_ps": 0.1,
        }
        for i in range(5)
    ] + [{"score": None}]
    html = _simulation_plots(
        records, {"simulate": {"enabled": True, "potential": "workbench-organic-w4a8", "temperature": 300}}
    )
    assert "5 candidates simulated" in html and "workbench-organic-w4a8" in html
    assert html.count("<img") == 1 and "data:image/png;base64," in html


def test_simulation_section_without_md():
    assert "no simulation stage" in _simulation_plots([{"score": 1.0}], {"simulate": {"enabled": False}})
    assert "No candidate finished" in _simulation_plots([{"score": 1.0}], {"simulate": {"enabled": True}})
