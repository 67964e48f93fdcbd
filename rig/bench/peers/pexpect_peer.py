"""pexpect over pyserial, as pytest-embedded and labgrid build on: pyserial opens the port (raw,
115200 8N1) and pexpect's fdspawn expects on its descriptor. Run by posrig-bench."""

import pexpect.fdpexpect
import serial

from peer_common import parse_args, run

args = parse_args(__doc__)
port = serial.Serial(args.port, 115200)
console = pexpect.fdpexpect.fdspawn(port)
run(args, lambda patterns, timeout: console.expect(patterns, timeout=timeout))
