"""Serve a simulated device as a real Modbus TCP server (pymodbus), in real or accelerated time."""

from __future__ import annotations

import asyncio
import functools
import sys
import time

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from edge_agent.profiles import DeviceProfile
from simulators.pump import PumpSimulator
from simulators.registers import RegisterImage

# pymodbus function codes → our table names.
_FC_TABLE = {3: "holding", 6: "holding", 16: "holding", 23: "holding", 4: "input"}


async def _serve_current(
    image: RegisterImage,
    function_code: int,
    start_address: int,
    address: int,
    count: int,
    current_registers: list[int],
    set_values: list[int] | list[bool] | None,
) -> None:
    """pymodbus action hook: copy the latest register image into the block being read."""
    table = _FC_TABLE.get(function_code)
    if table is None:
        return
    src = image.tables[table]
    lo = address - start_address
    current_registers[lo : lo + count] = src[address : address + count]


def build_device(image: RegisterImage, unit_id: int) -> SimDevice:
    def regs(n: int) -> list[SimData]:
        return [SimData(0, count=n, values=0, datatype=DataType.REGISTERS)]

    return SimDevice(
        id=unit_id,
        simdata=(
            [SimData(0, count=16, values=False, datatype=DataType.BITS)],
            [SimData(0, count=16, values=False, datatype=DataType.BITS)],
            regs(len(image.tables["holding"])),
            regs(len(image.tables["input"])),
        ),
        action=functools.partial(_serve_current, image),
    )


async def serve(
    profile: DeviceProfile,
    sim: PumpSimulator,
    host: str,
    port: int,
    unit_id: int,
    speed: float,
    tick: float,
    duration: float | None = None,
) -> None:
    image = RegisterImage(profile)
    image.write(sim.measure())
    server = ModbusTcpServer(build_device(image, unit_id), address=(host, port))
    await server.serve_forever(background=True)
    # With port 0 the OS picks the port; the listening transport knows which.
    sockets = getattr(server.transport, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    start = time.time()
    # One machine-readable line so tests and the demo learn the port (port 0 = any free port) and
    # the wall-clock time at which simulated time 0 began.
    print(f"READY modbus {host}:{bound} start={start:.6f} speed={speed}", flush=True)
    try:
        k = 0
        while duration is None or time.time() - start < duration:
            k += 1
            await asyncio.sleep(max(0.0, start + k * tick - time.time()))
            target = (time.time() - start) * speed
            if target > sim.state.t:
                sim.step(target - sim.state.t)
            image.write(sim.measure())
    finally:
        await server.shutdown()  # type: ignore[no-untyped-call]
        print("STOPPED", file=sys.stderr, flush=True)
