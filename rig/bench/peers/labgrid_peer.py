"""labgrid's own SerialDriver.expect: a Target with a RawSerialPort resource on the port and a
SerialDriver bound to it, used as labgrid's library documentation shows. Run by posrig-bench."""

from labgrid import Target
from labgrid.driver import SerialDriver
from labgrid.resource import RawSerialPort

from peer_common import parse_args, run

args = parse_args(__doc__)
target = Target("posrig-bench")
RawSerialPort(target, name=None, port=args.port, speed=115200)
console = SerialDriver(target, name=None)
target.activate(console)
run(args, lambda patterns, timeout: console.expect(patterns, timeout=timeout)[0])
