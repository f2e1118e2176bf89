"""JAX trajectory analysis against the plain NumPy references, brute-force definitions and known physics."""

from __future__ import annotations

import numpy as np
import pytest

from simulation import analysis
from simulation import analysis_numpy as reference

CELL = np.array([[10.0, 0.0, 0.0], [1.5, 11.0, 0.0], [0.5, -1.0, 12.0]])  # triclinic


@pytest.fixture(scope="module")
def walk() -> np.ndarray:
    """A 400-frame random walk of 7 atoms (Angstrom), spread over the cell."""
    rng = np.random.default_rng(0)
    start = rng.uniform(0.0, 9.0, size=(7, 3))
    return start + np.cumsum(rng.normal(scale=0.15, size=(400, 7, 3)), axis=0)


@pytest.mark.parametrize("cell", [None, CELL])
@pytest.mark.parametrize("species", [(None, None), ([0, 1, 2], [3, 4, 5, 6])])
def test_rdf_matches_numpy(walk, cell, species):
    r, g = analysis.rdf(walk, 4.5, 45, cell=cell, i_atoms=species[0], j_atoms=species[1])
    r_ref, g_ref = reference.rdf(walk, 4.5, 45, cell=cell, i_atoms=species[0], j_atoms=species[1])
    np.testing.assert_allclose(r, r_ref)
    np.testing.assert_allclose(g, g_ref, rtol=1e-12, atol=1e-12)


def test_rdf_of_an_ideal_gas_is_one():
    rng = np.random.default_rng(1)
    box = np.diag([12.0, 12.0, 12.0])
    x = rng.uniform(0.0, 12.0, size=(300, 60, 3))
    r, g = analysis.rdf(x, 6.0, 12, cell=box)
    assert np.abs(g[2:] - 1.0).max() < 0.05  # shells beyond 1 A hold enough pairs for 5 %


def test_rdf_minimum_image_sees_pairs_across_the_boundary():
    x = np.array([[[0.2, 5.0, 5.0], [9.75, 5.0, 5.0]]])  # 0.45 A apart through the wall of a 10 A box
    r, g = analysis.rdf(x, 1.0, 10, cell=np.diag([10.0, 10.0, 10.0]))
    assert g.argmax() == 4 and g[np.arange(10) != 4].sum() == 0


def test_rdf_refuses_r_max_beyond_half_the_cell(walk):
    with pytest.raises(ValueError, match="half the narrowest cell width"):
        analysis.rdf(walk, 8.0, cell=CELL)


def test_msd_matches_brute_force_and_numpy(walk):
    m = analysis.msd(walk)
    brute = np.array([np.mean(np.sum((walk[k:] - walk[: len(walk) - k]) ** 2, -1)) for k in range(len(walk))])
    np.testing.assert_allclose(m, brute, atol=1e-9)
    np.testing.assert_allclose(m, reference.msd(walk), atol=1e-9)
    assert analysis.msd(walk, max_lag=10).shape == (10,)


def test_msd_unwraps_periodic_positions(walk):
    wrapped = walk - np.floor(walk @ np.linalg.inv(CELL)) @ CELL
    np.testing.assert_allclose(analysis.msd(wrapped, cell=CELL), analysis.msd(walk), atol=1e-8)
    np.testing.assert_allclose(analysis.unwrap(wrapped, CELL) - wrapped[0] + walk[0], walk, atol=1e-9)


def test_diffusion_coefficient_of_a_random_walk():
    rng = np.random.default_rng(2)
    dt, sigma = 0.01, 0.05  # ps, Angstrom per axis per step -> D = sigma^2 / (2 dt)
    x = np.cumsum(rng.normal(scale=sigma, size=(4000, 50, 3)), axis=0)
    m = analysis.msd(x, max_lag=400)
    fit = analysis.diffusion_coefficient(np.arange(400) * dt, m)
    assert fit["d_a2_per_ps"] == pytest.approx(sigma**2 / (2 * dt), rel=0.1)
    assert fit["d_cm2_per_s"] == pytest.approx(fit["d_a2_per_ps"] * 1e-4)
    ref = reference.diffusion_coefficient(np.arange(400) * dt, m)
    assert fit["d_a2_per_ps"] == pytest.approx(ref["d_a2_per_ps"], rel=1e-10)


def test_vacf_and_vdos_match_numpy_and_find_the_oscillator_frequency():
    dt = 0.002  # ps
    t = np.arange(4096) * dt
    nu_inv_cm = np.array([1000.0, 3000.0])  # two oscillating atoms
    omega = 2 * np.pi * nu_inv_cm / analysis.THZ_TO_INV_CM  # rad/ps
    phases = np.random.default_rng(3).uniform(0, 2 * np.pi, size=(2, 3))
    x = np.sin(omega[None, :, None] * t[:, None, None] + phases[None])  # (frames, 2, 3)
    v = analysis.finite_difference_velocities(x, dt)
    np.testing.assert_allclose(v, reference.finite_difference_velocities(x, dt))
    masses = np.array([12.0, 1.0])
    c = analysis.vacf(v, max_lag=500, masses=masses)
    np.testing.assert_allclose(c, reference.vacf(v, max_lag=500, masses=masses), atol=1e-12)
    assert c[0] == pytest.approx(1.0)
    freq, dos = analysis.vdos(v, dt)
    freq_ref, dos_ref = reference.vdos(v, dt)
    np.testing.assert_allclose(freq, freq_ref)
    np.testing.assert_allclose(dos, dos_ref, rtol=1e-10, atol=1e-14)
    assert np.trapezoid(dos, freq) == pytest.approx(1.0)
    low, high = freq < 2000.0, freq >= 2000.0
    assert freq[low][dos[low].argmax()] == pytest.approx(1000.0, abs=5.0)  # resolution 4 cm^-1
    assert freq[high][dos[high].argmax()] == pytest.approx(3000.0, abs=5.0)


def test_bond_lengths_angles_and_their_distributions(walk):
    bonds = [[0, 1], [2, 5], [6, 3]]
    triples = [[0, 1, 2], [4, 3, 6]]
    for cell in (None, CELL):
        np.testing.assert_allclose(
            analysis.bond_lengths(walk, bonds, cell), reference.bond_lengths(walk, bonds, cell), atol=1e-12
        )
        np.testing.assert_allclose(
            analysis.angles(walk, triples, cell), reference.angles(walk, triples, cell), atol=1e-9
        )
    centres, dens = analysis.bond_length_distribution(walk, bonds, 40, (0.0, 20.0))
    centres_ref, dens_ref = reference.histogram(reference.bond_lengths(walk, bonds), 40, (0.0, 20.0))
    np.testing.assert_allclose(centres, centres_ref)
    np.testing.assert_allclose(dens, dens_ref, atol=1e-12)
    assert dens.shape == (40, 3) and np.allclose(dens.sum(0) * 0.5, 1.0)
    _, angle_dens = analysis.angle_distribution(walk, triples)
    assert angle_dens.shape == (90, 2)


def test_right_angle_and_bond_length_exact():
    x = np.array([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 2.0, 0.0]]])
    assert analysis.bond_lengths(x, [[1, 2]])[0, 0] == pytest.approx(2.0)
    assert analysis.angles(x, [[0, 1, 2]])[0, 0] == pytest.approx(90.0)


def test_energy_drift_definitions_and_numpy():
    rng = np.random.default_rng(4)
    t = np.arange(1000) * 0.01  # 10 ps
    kinetic = 0.5 + 0.02 * rng.normal(size=1000)
    total = -100.0 + 0.009 * t + 0.001 * rng.normal(size=1000)  # 9 meV/ps over 9 atoms: 1 meV/atom/ps
    out = analysis.energy_drift(t, total, kinetic, n_atoms=9)
    ref = reference.energy_drift(t, total, kinetic, n_atoms=9)
    for key, value in ref.items():
        assert out[key] == pytest.approx(value, rel=1e-9), key
    assert out["drift_mev_per_atom_ps"] == pytest.approx(1.0, rel=0.05)
    assert out["drift_ratio"] == pytest.approx(out["total_drift_ev"] / np.std(kinetic))
    assert out["total_drift_ev"] == pytest.approx(abs(out["drift_ev_per_ps"]) * 9.99)


def test_vmapped_over_trajectories_equals_one_at_a_time(walk):
    batch = np.stack([walk, walk[::-1] * 0.9, walk + 1.0])
    np.testing.assert_allclose(analysis.msd(batch)[1], analysis.msd(batch[1]), atol=1e-9)
    np.testing.assert_allclose(analysis.rdf(batch, 4.5, cell=CELL)[1][2], analysis.rdf(batch[2], 4.5, cell=CELL)[1])
    np.testing.assert_allclose(analysis.bond_lengths(batch, [[0, 1]])[0], analysis.bond_lengths(walk, [[0, 1]]))
    t = np.arange(len(walk)) * 0.01
    energies = batch[:, :, 0, 0]
    drift = analysis.energy_drift(t, energies, np.abs(energies) + 1.0, 7)
    assert drift["drift_ratio"].shape == (3,)
    single = analysis.energy_drift(t, energies[1], np.abs(energies[1]) + 1.0, 7)
    assert drift["drift_mev_per_atom_ps"][1] == pytest.approx(single["drift_mev_per_atom_ps"])


def test_results_are_float64_even_with_jax_in_float32_mode(walk):
    import jax

    assert not jax.config.jax_enable_x64  # the module switches 64-bit on only inside its calls
    assert analysis.msd(walk).dtype == np.float64
    assert not jax.config.jax_enable_x64


def test_bad_input_is_refused_with_the_reason():
    with pytest.raises(ValueError, match=r"shape \(frames, atoms, 3\)"):
        analysis.msd(np.zeros((10, 3)))
    with pytest.raises(ValueError, match="NaN"):
        analysis.rdf(np.full((2, 3, 3), np.nan), 2.0)
    with pytest.raises(ValueError, match="outside"):
        analysis.bond_lengths(np.zeros((2, 3, 3)), [[0, 5]])
    with pytest.raises(ValueError, match="zero volume"):
        analysis.rdf(np.zeros((2, 3, 3)), 1.0, cell=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="masses"):
        analysis.vacf(np.ones((5, 3, 3)), masses=[1.0, 2.0])
    with pytest.raises(ValueError, match="share the frame axis"):
        analysis.energy_drift(np.arange(5), np.zeros(4), np.zeros(4), 3)


def test_import_simulation_does_not_import_jax():
    import subprocess
    import sys

    code = "import sys, simulation, simulation.md; print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
