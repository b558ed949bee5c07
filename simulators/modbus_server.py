"""Serve a simulated device as a real Modbus server (pymodbus), over TCP or RTU on a serial port,
in real or accelerated time."""

from __future__ import annotations

import asyncio
import functools
import signal
import sys
import time
from collections.abc import Awaitable, Callable

from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from edge_agent.sources.modbus.profile import ModbusProfile
from simulators.machine import Machine
from simulators.registers import RegisterImage
from simulators.scenarios import is_offline

# pymodbus function codes → our table names.
_FC_TABLE = {
    1: "coil", 5: "coil", 15: "coil", 2: "discrete",
    3: "holding", 6: "holding", 16: "holding", 23: "holding", 4: "input",
}  # fmt: skip
IDENTITY = {"serial_number": "SIM-0001", "firmware_text": "sim"}


def _pack_bits(bits: list[int]) -> list[int]:
    """Bit addresses → 16-bit words, bit 0 first (how pymodbus' simulator stores bit tables)."""
    words = [0] * ((len(bits) + 15) // 16)
    for a, b in enumerate(bits):
        if b:
            words[a // 16] |= 1 << (a % 16)
    return words


class RequestCount:
    """Modbus requests served (every call of the action hook: one per read or write request).
    `serve` prints `REQUESTS <n>` on stdout on SIGUSR1, so a benchmark counts at the server what
    each client asks per poll, whichever client it is."""

    def __init__(self) -> None:
        self.n = 0


async def _serve_current(
    image: RegisterImage,
    counter: RequestCount,
    function_code: int,
    start_address: int,
    address: int,
    count: int,
    current_registers: list[int],
    set_values: list[int] | list[bool] | None,
) -> None:
    """pymodbus action hook: copy the latest image into the block being read."""
    counter.n += 1
    table = _FC_TABLE.get(function_code)
    if table is None:
        return
    src = image.tables[table]
    if table in ("coil", "discrete"):
        # `address`/`count` are bits here; copy the whole (small) packed table.
        packed = _pack_bits(src)
        current_registers[: len(packed)] = packed
        return
    lo = address - start_address
    current_registers[lo : lo + count] = src[address : address + count]


def build_device(
    image: RegisterImage, unit_id: int, counter: RequestCount | None = None
) -> SimDevice:
    def regs(n: int) -> list[SimData]:
        return [SimData(0, count=n, values=0, datatype=DataType.REGISTERS)]

    def bits(n: int) -> list[SimData]:
        return [SimData(0, count=(n + 15) // 16, values=False, datatype=DataType.BITS)]

    return SimDevice(
        id=unit_id,
        simdata=(
            bits(len(image.tables["coil"])),
            bits(len(image.tables["discrete"])),
            regs(len(image.tables["holding"])),
            regs(len(image.tables["input"])),
        ),
        action=functools.partial(_serve_current, image, counter or RequestCount()),
    )


async def run_physics(
    sim: Machine,
    image: RegisterImage,
    speed: float,
    tick: float,
    start: float,
    duration: float | None,
    on_tick: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Advance the physics in step with the wall clock and refresh the image every tick."""
    k = int(max(0.0, time.time() - start) / tick)  # a unit that ran before it serves: from now
    while duration is None or time.time() - start < duration:
        k += 1
        await asyncio.sleep(max(0.0, start + k * tick - time.time()))
        target = (time.time() - start) * speed
        if target > sim.state.t:
            sim.step(target - sim.state.t)
        image.write(sim.measure())
        if on_tick is not None:
            await on_tick()


def new_image(profile: ModbusProfile, sim: Machine) -> RegisterImage:
    image = RegisterImage(profile)
    image.write_text(IDENTITY)
    image.write(sim.measure())
    return image


async def serve(
    profile: ModbusProfile,
    sim: Machine,
    host: str,
    port: int,
    unit_id: int,
    speed: float,
    tick: float,
    duration: float | None = None,
) -> None:
    image = new_image(profile, sim)
    counter = RequestCount()
    server: ModbusTcpServer | None = ModbusTcpServer(
        build_device(image, unit_id, counter), address=(host, port)
    )
    assert server is not None
    await server.serve_forever(background=True)
    # With port 0 the OS picks the port; the listening transport knows which.
    sockets = getattr(server.transport, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    # A unit that has run before it serves (`--start`): simulated time 0 lies that far back.
    ran_before = sim.state.t / speed
    start = time.time() - ran_before
    if duration is not None:
        duration += ran_before
    # One machine-readable line so tests and the demo learn the port (port 0 = any free port) and
    # the wall-clock time at which simulated time 0 began.
    print(f"READY modbus {host}:{bound} start={start:.6f} speed={speed}", flush=True)
    asyncio.get_running_loop().add_signal_handler(
        signal.SIGUSR1, lambda: print(f"REQUESTS {counter.n}", flush=True)
    )

    async def offline_or_back() -> None:
        """The `offline` scenario: the device drops off the network and comes back later."""
        nonlocal server
        offline = is_offline(sim.scenario, sim.state.t)
        if offline and server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]
            server = None
        elif not offline and server is None:
            server = ModbusTcpServer(build_device(image, unit_id, counter), address=(host, bound))
            await server.serve_forever(background=True)

    try:
        await run_physics(sim, image, speed, tick, start, duration, on_tick=offline_or_back)
    finally:
        if server is not None:
            await server.shutdown()  # type: ignore[no-untyped-call]
        print("STOPPED", file=sys.stderr, flush=True)


async def serve_rtu(
    profile: ModbusProfile,
    sims: dict[int, Machine],
    serial_port: str | None,
    baudrate: int,
    speed: float,
    tick: float,
    duration: float | None = None,
) -> None:
    """Serve one simulated device per unit id on a serial line. Without `serial_port`, make a
    pseudo-terminal pair and print the client's end in the READY line (tests, no hardware)."""
    from simulators.pty_pair import PtyPair

    images = {unit: new_image(profile, sim) for unit, sim in sims.items()}
    pair: PtyPair | None = None
    if serial_port is None:
        pair = PtyPair()
        pair.start()
        server_port, client_port = pair.server_path, pair.client_path
    else:
        server_port = client_port = serial_port
    devices = [build_device(image, unit) for unit, image in images.items()]
    # pymodbus answers for an absent unit id with an exception (a real line would stay silent).
    server = ModbusSerialServer(devices, port=server_port, baudrate=baudrate)
    await server.serve_forever(background=True)
    start = time.time()
    units = ",".join(str(u) for u in images)
    print(
        f"READY modbus-rtu {client_port} start={start:.6f} speed={speed} units={units}", flush=True
    )
    try:
        async with asyncio.TaskGroup() as tg:
            for unit, sim in sims.items():
                tg.create_task(run_physics(sim, images[unit], speed, tick, start, duration))
    finally:
        await server.shutdown()  # type: ignore[no-untyped-call]
        if pair is not None:
            pair.close()
        print("STOPPED", file=sys.stderr, flush=True)
