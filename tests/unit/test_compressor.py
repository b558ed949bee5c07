from itertools import pairwise

from simulators.compressor import CUT_IN, CUT_OUT, CompressorSimulator, CoolerFouling


def run(sim: CompressorSimulator, seconds: int) -> list[dict[str, float]]:
    out = []
    for _ in range(seconds):
        sim.step(1.0)
        out.append(sim.measure())
    return out


def test_load_unload_cycle_keeps_pressure_in_its_band():
    rows = run(CompressorSimulator(seed=3), 1800)
    loaded = [r["loaded"] for r in rows]
    switches = sum(1 for a, b in pairwise(loaded) if a != b)
    assert switches >= 20  # tens of load/unload cycles in half an hour
    assert all(CUT_IN - 0.2 < r["discharge_pressure"] < CUT_OUT + 0.2 for r in rows)
    on = [r["motor_current"] for r in rows if r["loaded"]]
    off = [r["motor_current"] for r in rows if not r["loaded"]]
    assert min(on) > max(off)  # current follows the load state


def test_cooler_fouling_heats_the_oil():
    healthy = run(CompressorSimulator(seed=3), 3600)[-1]["oil_temperature"]
    fouled = CompressorSimulator(seed=3, scenario=CoolerFouling(name="cooler_fouling", at=0.0))
    assert run(fouled, 3600)[-1]["oil_temperature"] > healthy + 10
