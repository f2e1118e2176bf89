"""Trajectory display (plot, 3D animation, notebook HTML, text repr), analysis accessor and conversions."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from simulation.md import Trajectory, run  # noqa: E402


@pytest.fixture(scope="module")
def traj(ethanol) -> Trajectory:
    """A short NVE run of ethanol with the shipped potential: 61 frames, every 2 steps of 0.5 fs."""
    return run(ethanol, potential="ethanol", protocol="NVE", steps=120, report_every=2, temperature=300.0)


@pytest.fixture()
def box_traj() -> Trajectory:
    """A synthetic periodic trajectory: 8 particles diffusing in a 10 A box, wrapped into the cell."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 10, size=(8, 3)) + np.cumsum(rng.normal(scale=0.1, size=(50, 8, 3)), axis=0)
    frames = len(x)
    return Trajectory(
        numbers=np.array([8] * 8),
        positions=x - np.floor(x / 10.0) * 10.0,
        potential_energy=np.linspace(-10.0, -10.1, frames),
        kinetic_energy=np.full(frames, 0.3) + 0.01 * rng.normal(size=frames),
        temperature=np.full(frames, 300.0),
        time_ps=np.arange(frames) * 0.01,
        protocol="NVT",
        timestep_fs=1.0,
        cell=np.eye(3) * 10.0,
    )


def test_plot_draws_energies_temperature_and_drift_fit(traj):
    from matplotlib.figure import Figure

    fig = traj.plot()
    assert isinstance(fig, Figure)
    energy_ax, drift_ax, temperature_ax = fig.axes
    assert [line.get_label() for line in energy_ax.get_lines()] == ["potential", "kinetic", "total"]
    assert len(energy_ax.get_lines()[0].get_xdata()) == traj.n_frames
    total, fit = drift_ax.get_lines()
    np.testing.assert_allclose(total.get_ydata(), 1000 * (traj.total_energy - traj.total_energy[0]))
    assert fit.get_label() == f"drift {traj.energy_drift():.3g} meV/atom/ps"
    np.testing.assert_allclose(temperature_ax.get_lines()[0].get_ydata(), traj.temperature)
    assert "T (K)" in temperature_ax.get_ylabel()


def test_show_returns_an_animated_py3dmol_view(traj):
    import py3Dmol

    view = traj.show(every=10)
    assert isinstance(view, py3Dmol.view)
    xyz = traj.to_xyz(every=10)
    assert xyz.count("\n9\n") + xyz.startswith("9\n") == len(range(0, traj.n_frames, 10))
    html = view._make_html()
    assert "addModelsAsFrames" in html and "animate" in html
    assert "addLine" not in html


def test_show_draws_the_cell_of_periodic_runs(box_traj):
    html = box_traj.show()._make_html()
    assert html.count("addLine") == 12


def test_repr_html_has_a_summary_table_and_an_inline_svg_plot(traj):
    html = traj._repr_html_()
    assert html.count("<svg") == 1 and "<table>" in html
    assert "meV/atom/ps" in html and "C2H6O" in html and "NVE" in html


def test_text_repr_outside_jupyter(traj, box_traj):
    text = repr(traj)
    assert text.startswith("Trajectory(NVE, C2H6O, 9 atoms, 61 frames")
    assert "\n" not in text and "meV/atom/ps" in text
    assert repr(box_traj).endswith("periodic)")
    assert "O8" in repr(box_traj)


def test_analysis_accessor_matches_the_functions(traj):
    from simulation import analysis

    acc = traj.analysis
    assert acc.dt_ps == pytest.approx(0.001)
    assert len(acc.bonds) == 8  # ethanol: C-C, C-O, O-H and five C-H
    assert acc.bond_lengths().shape == (traj.n_frames, 8)
    assert acc.angles().shape[1] == 13
    r, g = acc.rdf(r_max=4.0, n_bins=40)
    np.testing.assert_allclose(g, analysis.rdf(traj.positions, 4.0, 40)[1])
    _, g_ch = acc.rdf(r_max=4.0, n_bins=40, a="C", b="H")
    assert g_ch[(r > 1.0) & (r < 1.2)].sum() > 0  # C-H bonds near 1.1 A
    _, g_hh = acc.rdf(r_max=4.0, n_bins=40, a="H")  # b defaults to a: H-H only, no bonded pairs
    hydrogens = np.nonzero(traj.numbers == 1)[0]
    np.testing.assert_allclose(g_hh, analysis.rdf(traj.positions, 4.0, 40, None, hydrogens, hydrogens)[1])
    assert g_hh[r < 1.4].sum() == 0
    with pytest.raises(ValueError, match="no N atoms"):
        acc.rdf(a="N")
    lag, m = acc.msd()
    assert m[0] == 0 and lag[1] == pytest.approx(0.001)
    freq, dos = acc.vdos()
    assert np.trapezoid(dos, freq) == pytest.approx(1.0)
    _, c = acc.vacf(max_lag=20)
    assert c[0] == pytest.approx(1.0)
    drift = acc.drift()
    assert drift["drift_mev_per_atom_ps"] == pytest.approx(traj.energy_drift(), rel=1e-8)
    assert drift["drift_ratio"] >= 0


def test_analysis_uses_the_cell_of_periodic_runs(box_traj):
    from simulation import analysis

    acc = box_traj.analysis
    r, g = acc.rdf(n_bins=20)
    assert r[-1] < 5.0  # r_max defaults to half the box
    np.testing.assert_allclose(g, analysis.rdf(box_traj.positions, 5.0, 20, cell=box_traj.cell)[1])
    lag, m = acc.msd()
    assert m.max() < 10.0  # unwrapped: no jumps of a box length
    assert acc.diffusion()["d_a2_per_ps"] > 0


def test_to_ase_frames_carry_energy_and_cell(traj, box_traj):
    frames = traj.to_ase()
    assert len(frames) == traj.n_frames
    assert frames[5].get_potential_energy() == pytest.approx(traj.potential_energy[5])
    np.testing.assert_allclose(frames[5].positions, traj.positions[5])
    assert not frames[0].pbc.any()
    periodic = box_traj.to_ase()
    assert periodic[0].pbc.all() and np.allclose(periodic[0].cell.array, box_traj.cell)


def test_to_mdtraj_or_a_clear_import_error(traj):
    try:
        import mdtraj  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install mdtraj"):
            traj.to_mdtraj()
    else:
        md = traj.to_mdtraj()
        assert md.n_frames == traj.n_frames and md.n_atoms == 9
        np.testing.assert_allclose(md.xyz * 10.0, traj.positions, atol=1e-4)


def test_npz_round_trip_keeps_cell_and_bonds(tmp_path, box_traj):
    box_traj.bonds = ((0, 1), (2, 3))
    loaded = Trajectory.load_npz(box_traj.save_npz(tmp_path / "traj.npz"))
    np.testing.assert_allclose(loaded.positions, box_traj.positions)
    np.testing.assert_allclose(loaded.cell, box_traj.cell)
    assert loaded.bonds == ((0, 1), (2, 3)) and loaded.protocol == "NVT"


def test_empty_trajectory_refuses_to_plot():
    empty = Trajectory(
        numbers=np.array([1]),
        positions=np.zeros((0, 1, 3)),
        potential_energy=np.zeros(0),
        kinetic_energy=np.zeros(0),
        temperature=np.zeros(0),
        time_ps=np.zeros(0),
        protocol="NVT",
        timestep_fs=0.5,
    )
    assert "0 frames" in repr(empty)
    with pytest.raises(ValueError, match="no frames"):
        empty.plot()
    with pytest.raises(ValueError, match="no frames"):
        empty.show()
