"""Cross-check of our Rust ISO 8583 codec against pyiso8583, byte for byte, MAC included.

shared/domain.md §2 requires the codec to agree with an independent implementation. This module is
that check: it describes the wire format a second time, as a pyiso8583 spec written here from the
table in domain.md §2 (it deliberately does not read fixtures/iso8583/cup.toml), computes the CUP
"ECB" MAC a second time with pycryptodome's DES, and drives our codec through its command-line
binary (`iso8583 encode` / `iso8583 decode`, built by cargo).

Both directions are checked for every message kind the rig sends:

* pyiso8583 (+ Python MAC) encodes, our CLI decodes: same fields, and `mac_ok` is true;
* our CLI encodes (filling field 64 itself), pyiso8583 decodes: same fields, and our field 64 is
  the Python MAC;
* and the raw bytes of both encoders are identical.

Garbled frames (truncated, a bad BCD nibble, a length over the maximum) must make our CLI exit
non-zero with an error naming the field and a byte offset inside that field.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import iso8583
import pytest
from Crypto.Cipher import DES

REPO_ROOT = Path(__file__).resolve().parent.parent
SPEC_PATH = REPO_ROOT / "fixtures" / "iso8583" / "cup.toml"

# A single-DES working key (MAK) for the tests; any 8-byte key will do.
MAK_HEX = "133457799BBCDFF1"
MAK = bytes.fromhex(MAK_HEX)

TPDU = "6000030000"
HEADER = "603100000000"

# Sign-on and settlement carry no MAC (domain.md §2).
MAC_EXEMPT_MTIS = {"0800", "0810", "0500", "0510"}

# The byte offset of the MTI in an unframed message: TPDU (5) + header (6).
MTI_OFFSET = 11


# ---------------------------------------------------------------------------------------------
# The wire format, described independently for pyiso8583 (domain.md §2).
#
# pyiso8583 conventions (see iso8583.specs): data_enc "b" means the value is given as a hex string
# and packed two characters per byte, which is exactly packed BCD for digit strings (and lets the
# track-2 separator 'D' be the nibble 0xD); len_enc "bcd" gives a BCD length prefix whose width in
# bytes is len_type (1 byte = LLVAR, 2 bytes = LLLVAR); len_count "nibbles" counts the length in
# digits instead of bytes, and odd digit counts are completed with left_pad / right_pad.
# ---------------------------------------------------------------------------------------------


def _fixed_n(digits: int, desc: str) -> dict:
    """n, fixed length, packed BCD; an odd digit count is left-padded with a 0 nibble."""
    spec = {
        "data_enc": "b",
        "len_enc": "bcd",
        "len_type": 0,
        "len_count": "nibbles",
        "max_len": digits,
        "desc": desc,
    }
    if digits % 2:
        spec["left_pad"] = "0"
    return spec


def _var_bcd(max_digits: int, len_bytes: int, desc: str) -> dict:
    """n / z, variable length: BCD length prefix counting digits, value right-padded with 0."""
    return {
        "data_enc": "b",
        "len_enc": "bcd",
        "len_type": len_bytes,
        "len_count": "nibbles",
        "right_pad": "0",
        "max_len": max_digits,
        "desc": desc,
    }


def _fixed_ascii(chars: int, desc: str) -> dict:
    return {"data_enc": "ascii", "len_enc": "ascii", "len_type": 0, "max_len": chars, "desc": desc}


CUP_SPEC: dict = {
    # TPDU (5 bytes) + header (6 bytes), both opaque binary.
    "h": {"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 11, "desc": "TPDU + header"},
    # MTI as 2 bytes of BCD.
    "t": {"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 2, "desc": "Message Type"},
    # 8-byte binary primary bitmap.
    "p": {"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 8, "desc": "Bitmap, Primary"},
    "2": _var_bcd(19, 1, "PAN, n..19 LLVAR"),
    "3": _fixed_n(6, "Processing code"),
    "4": _fixed_n(12, "Amount (fen)"),
    "11": _fixed_n(6, "STAN"),
    "12": _fixed_n(6, "Local time hhmmss"),
    "13": _fixed_n(4, "Local date MMDD"),
    "14": _fixed_n(4, "Expiry YYMM"),
    "22": _fixed_n(3, "Entry mode"),
    "23": _fixed_n(3, "Card sequence number"),
    "25": _fixed_n(2, "Condition code"),
    "35": _var_bcd(37, 1, "Track 2, z..37 LLVAR"),
    "37": _fixed_ascii(12, "RRN"),
    "38": _fixed_ascii(6, "Authorization code"),
    "39": _fixed_ascii(2, "Response code"),
    "41": _fixed_ascii(8, "Terminal ID"),
    "42": _fixed_ascii(15, "Merchant ID"),
    "49": _fixed_ascii(3, "Currency code"),
    # b..255 LLLVAR: the 2-byte BCD length counts bytes.
    "55": {"data_enc": "b", "len_enc": "bcd", "len_type": 2, "max_len": 255, "desc": "ICC data"},
    "60": _var_bcd(17, 2, "Reserved private, n..17 LLLVAR"),
    "61": _var_bcd(29, 2, "Original data, n..29 LLLVAR"),
    # ans..163 LLLVAR: the 2-byte BCD length counts characters.
    "63": {"data_enc": "ascii", "len_enc": "bcd", "len_type": 2, "max_len": 163, "desc": "Private"},
    "64": {"data_enc": "b", "len_enc": "ascii", "len_type": 0, "max_len": 8, "desc": "MAC"},
}


# ---------------------------------------------------------------------------------------------
# The CUP "ECB" MAC, computed independently with pycryptodome.
# ---------------------------------------------------------------------------------------------


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def cup_ecb_mac(key: bytes, data: bytes) -> bytes:
    """The 8 ASCII bytes of field 64 for `data` (the bytes from the MTI to the end of field 63)."""
    data = data + b"\x00" * (-len(data) % 8)
    block = bytes(8)
    for i in range(0, len(data), 8):
        block = _xor(block, data[i : i + 8])
    hexed = block.hex().upper().encode("ascii")  # 16 characters
    des = DES.new(key, DES.MODE_ECB)
    first = des.encrypt(hexed[:8])
    second = des.encrypt(_xor(first, hexed[8:]))
    return second.hex().upper()[:8].encode("ascii")


# ---------------------------------------------------------------------------------------------
# The messages the rig sends and receives.
# Every value is a string in the CLI's JSON shape, which is also what pyiso8583 takes: digits for
# n/z fields, text for an/ans fields, upper-case hex for binary fields.
# ---------------------------------------------------------------------------------------------

PAN19 = "6222021234567890123"
PAN16 = "6217001234567890"
TRACK2_ODD = PAN19 + "D2512101"  # 27 characters: right-padded with a 0 nibble
TRACK2_EVEN = PAN16 + "D26122010000"  # 28 characters
TID = "TERM0001"
MID = "MERCHANT0000001"
ICC_SHORT = "9F2608A1B2C3D4E5F607189F2701809F100807010103A0A802019F3704CAFEBABE"
# More than 99 bytes of ICC data, so the 2-byte BCD length prefix uses its upper byte (0x01..).
ICC_LONG = "9F2608A1B2C3D4E5F607189F2701809F10" + "20" + "0A" * 32 + "9F36020051" + "DF01" + "4C" + "5A" * 76

MESSAGES: dict[str, dict] = {
    "sale_0200_pan19": {
        "mti": "0200",
        "fields": {
            "2": PAN19,
            "3": "000000",
            "4": "000000012345",
            "11": "000123",
            "14": "2512",
            "22": "051",
            "23": "001",
            "25": "00",
            "35": TRACK2_ODD,
            "41": TID,
            "42": MID,
            "49": "156",
            "55": ICC_SHORT,
            "60": "22000001000",  # 60.1=22, 60.2 batch, 60.3: 11 digits (odd)
        },
    },
    "sale_0200_pan16_long_icc": {
        "mti": "0200",
        "fields": {
            "2": PAN16,
            "3": "000000",
            "4": "000000000001",
            "11": "999999",
            "14": "2612",
            "22": "071",
            "23": "000",
            "25": "00",
            "35": TRACK2_EVEN,
            "41": TID,
            "42": MID,
            "49": "156",
            "55": ICC_LONG,
            "60": "22000002",  # 8 digits (even)
        },
    },
    "sale_reply_0210": {
        "mti": "0210",
        "fields": {
            "2": PAN19,
            "3": "000000",
            "4": "000000012345",
            "11": "000123",
            "12": "143015",
            "13": "0315",
            "14": "2512",
            "25": "00",
            "37": "250315123456",
            "38": "A1B2C3",
            "39": "00",
            "41": TID,
            "42": MID,
            "49": "156",
            "60": "22000001",
        },
    },
    "void_0200": {
        "mti": "0200",
        "fields": {
            "2": PAN16,
            "3": "200000",
            "4": "000000012345",
            "11": "000124",
            "14": "2612",
            "22": "021",
            "25": "00",
            "35": TRACK2_EVEN,
            "37": "250315123456",
            "38": "A1B2C3",
            "41": TID,
            "42": MID,
            "49": "156",
            "60": "23000001000",  # 60.1=23
            "61": "0000010001230315",  # original batch, STAN, date: 16 digits
        },
    },
    "reversal_0400": {
        "mti": "0400",
        "fields": {
            "2": PAN19,
            "3": "000000",
            "4": "000000012345",
            "11": "000123",
            "14": "2512",
            "22": "051",
            "23": "001",
            "25": "00",
            "38": "A1B2C3",
            "39": "98",
            "41": TID,
            "42": MID,
            "49": "156",
            "55": ICC_SHORT,
            "60": "22000001",
            "61": "000001000123",  # original batch + STAN: 12 digits
        },
    },
    "reversal_reply_0410": {
        "mti": "0410",
        "fields": {
            "2": PAN19,
            "3": "000000",
            "4": "000000012345",
            "11": "000123",
            "12": "143102",
            "13": "0315",
            "25": "00",
            "37": "250315123457",
            "39": "00",
            "41": TID,
            "42": MID,
            "49": "156",
            "60": "220000010",  # 9 digits (odd)
        },
    },
    "sign_on_0800": {
        "mti": "0800",
        "fields": {
            "11": "000001",
            "41": TID,
            "42": MID,
            "60": "00000001003",
            "63": "01 ",
        },
    },
    "sign_on_reply_0810": {
        "mti": "0810",
        "fields": {
            "11": "000001",
            "12": "080000",
            "13": "0315",
            "37": "250315000001",
            "39": "00",
            "41": TID,
            "42": MID,
            "60": "00000001003",
        },
    },
    "settlement_0500": {
        "mti": "0500",
        "fields": {
            "11": "000200",
            "41": TID,
            "42": MID,
            "49": "156",
            "60": "00000001201",
            # More than 99 characters, so the 2-byte BCD length prefix uses its upper byte.
            "63": "01 SALE 0003 000000037035 VOID 0001 000000012345 REFUND 0000 000000000000 "
            "TOTAL 000000024690 CUP/UNIONPAY BATCH 000001 END-OF-BATCH #1 (test)",
        },
    },
    "settlement_reply_0510": {
        "mti": "0510",
        "fields": {
            "11": "000200",
            "12": "235959",
            "13": "0315",
            "37": "250315999999",
            "39": "00",
            "41": TID,
            "42": MID,
            "49": "156",
            "60": "00000001201",
            "63": "1",
        },
    },
}


# ---------------------------------------------------------------------------------------------
# Helpers: the CLI, pyiso8583, field positions.
# ---------------------------------------------------------------------------------------------


def _cli_path() -> Path:
    bin_dir = os.environ.get("POSRIG_BIN_DIR")
    directory = Path(bin_dir) if bin_dir else REPO_ROOT / "target" / "debug"
    path = directory / ("iso8583.exe" if os.name == "nt" else "iso8583")
    if not path.is_file():
        pytest.fail(
            f"the codec CLI {path} is missing: run `cargo build --workspace` in {REPO_ROOT} first "
            "(or point POSRIG_BIN_DIR at the directory holding the iso8583 binary)",
            pytrace=False,
        )
    return path


def run_cli(command: str, stdin: str, *, mac_key: str | None = None, framed: bool = False):
    args = [str(_cli_path()), "--spec", str(SPEC_PATH)]
    if mac_key is not None:
        args += ["--mac-key", mac_key]
    if framed:
        args.append("--framed")
    args.append(command)
    return subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)


def cli_encode(message: dict, *, mac_key: str | None = None, framed: bool = False) -> bytes:
    doc = {"tpdu": TPDU, "header": HEADER, "mti": message["mti"], "fields": message["fields"]}
    result = run_cli("encode", json.dumps(doc), mac_key=mac_key, framed=framed)
    assert result.returncode == 0, f"our encoder failed: {result.stderr}"
    text = result.stdout.strip()
    assert re.fullmatch(r"(?:[0-9A-F]{2})+", text), f"our encoder printed non upper-case hex: {text!r}"
    return bytes.fromhex(text)


def cli_decode(raw: bytes, *, mac_key: str | None = None) -> dict:
    result = run_cli("decode", raw.hex().upper(), mac_key=mac_key)
    assert result.returncode == 0, f"our decoder rejected {raw.hex().upper()}: {result.stderr}"
    return json.loads(result.stdout)


def py_doc(message: dict, mac: str | None = None) -> dict:
    doc = {"h": TPDU + HEADER, "t": message["mti"], **message["fields"]}
    if mac is not None:
        doc["64"] = mac
    return doc


def py_encode(message: dict) -> bytes:
    """pyiso8583 encoding of `message`, with field 64 = the Python MAC unless the MTI is exempt."""
    if message["mti"] in MAC_EXEMPT_MTIS:
        raw, _ = iso8583.encode(py_doc(message), CUP_SPEC)
        return bytes(raw)
    # Encode once with a placeholder MAC, so that the bitmap in the MAC region has bit 64 set.
    placeholder, _ = iso8583.encode(py_doc(message, mac="00" * 8), CUP_SPEC)
    mac = cup_ecb_mac(MAK, bytes(placeholder[MTI_OFFSET:-8]))
    raw, _ = iso8583.encode(py_doc(message, mac=mac.hex().upper()), CUP_SPEC)
    raw = bytes(raw)
    assert raw[:-8] == bytes(placeholder[:-8]) and raw[-8:] == mac
    return raw


def py_decode(raw: bytes) -> dict:
    decoded, _ = iso8583.decode(bytearray(raw), CUP_SPEC)
    return decoded


def py_fields(decoded: dict) -> dict:
    return {k: v for k, v in decoded.items() if k.isdigit() and k not in ("1",)}


def field_spans(message: dict) -> dict[int, tuple[int, int, int]]:
    """For each field of the pyiso8583 encoding: (start of length prefix, start of data, end)."""
    raw = py_encode(message)
    _, encoded = iso8583.decode(bytearray(raw), CUP_SPEC)
    offset = len(encoded["h"]["data"]) + len(encoded["t"]["data"]) + len(encoded["p"]["data"])
    spans = {}
    for key in sorted((k for k in encoded if k.isdigit()), key=int):
        start = offset
        data_start = start + len(encoded[key]["len"])
        offset = data_start + len(encoded[key]["data"])
        spans[int(key)] = (start, data_start, offset)
    assert offset == len(raw)
    return spans


IDS = list(MESSAGES)


# ---------------------------------------------------------------------------------------------
# Self-checks of the independent side, so that agreement means something.
# ---------------------------------------------------------------------------------------------


def test_python_mac_matches_a_hand_worked_example():
    # One 8-byte block: the XOR is the block itself, "0123456789ABCDEF" in hex.
    hexed = b"0123456789ABCDEF"
    des = DES.new(MAK, DES.MODE_ECB)
    expected = des.encrypt(_xor(des.encrypt(hexed[:8]), hexed[8:])).hex().upper()[:8].encode()
    assert cup_ecb_mac(MAK, bytes.fromhex("0123456789ABCDEF")) == expected
    # Zero padding: a short tail is padded, so appending explicit zeros changes nothing.
    assert cup_ecb_mac(MAK, b"\x02\x00\x70\x24") == cup_ecb_mac(MAK, b"\x02\x00\x70\x24\x00\x00\x00\x00")
    # XOR folding: the order of whole blocks does not matter, but their content does.
    a, b = b"ABCDEFGH", b"12345678"
    assert cup_ecb_mac(MAK, a + b) == cup_ecb_mac(MAK, b + a)
    assert cup_ecb_mac(MAK, a + b) != cup_ecb_mac(MAK, a + a)
    # The MAC is 8 upper-case hex characters.
    assert re.fullmatch(rb"[0-9A-F]{8}", cup_ecb_mac(MAK, a + b))
    # The DES itself is the standard one (FIPS 81 / the classic 133457799BBCDFF1 example).
    assert DES.new(MAK, DES.MODE_ECB).encrypt(bytes.fromhex("0123456789ABCDEF")).hex().upper() == "85E813540F0AB405"


def test_pyiso8583_spec_matches_domain_examples():
    """Hand-written bytes for the trickiest encodings of domain.md §2, checked on the Python side."""
    raw = py_encode(MESSAGES["sale_0200_pan19"])
    assert raw[:11] == bytes.fromhex(TPDU + HEADER)
    assert raw[11:13] == b"\x02\x00"  # MTI in BCD
    _, enc = iso8583.decode(bytearray(raw), CUP_SPEC)
    assert enc["p"]["data"][7] & 0x01, "bit 64 must be set in the bitmap"
    assert enc["2"]["len"] == b"\x19" and enc["2"]["data"] == bytes.fromhex(PAN19 + "0")
    assert enc["22"]["data"] == b"\x00\x51"  # n3 left-padded
    assert enc["35"]["len"] == b"\x27" and enc["35"]["data"] == bytes.fromhex(TRACK2_ODD + "0")
    assert enc["55"]["len"] == bytes.fromhex("%04d" % (len(ICC_SHORT) // 2))  # counts bytes
    assert enc["60"]["len"] == b"\x00\x11" and enc["60"]["data"] == bytes.fromhex("220000010000")
    assert enc["41"]["data"] == b"TERM0001"
    raw = py_encode(MESSAGES["settlement_0500"])
    _, enc = iso8583.decode(bytearray(raw), CUP_SPEC)
    text = MESSAGES["settlement_0500"]["fields"]["63"]
    assert len(text) > 99 and enc["63"]["len"] == bytes.fromhex("%04d" % len(text))  # counts characters
    assert not enc["p"]["data"][7] & 0x01, "settlement carries no MAC"


# ---------------------------------------------------------------------------------------------
# The cross-check proper.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", IDS)
def test_pyiso8583_encodes_ours_decodes(name):
    message = MESSAGES[name]
    raw = py_encode(message)
    ours = cli_decode(raw, mac_key=MAK_HEX)
    assert ours["tpdu"] == TPDU
    assert ours["header"] == HEADER
    assert ours["mti"] == message["mti"]
    expected = dict(message["fields"])
    if message["mti"] in MAC_EXEMPT_MTIS:
        assert "64" not in ours["fields"]
        assert ours.get("mac_ok") is not False
    else:
        expected["64"] = raw[-8:].hex().upper()
        assert ours.get("mac_ok") is True, f"our decoder rejected the Python MAC: {ours}"
    assert ours["fields"] == expected
    # And pyiso8583 reads its own bytes back to the same message (a sanity check of the spec).
    assert py_fields(py_decode(raw)) == expected


@pytest.mark.parametrize("name", IDS)
def test_ours_encodes_pyiso8583_decodes(name):
    message = MESSAGES[name]
    raw = cli_encode(message, mac_key=MAK_HEX)
    decoded = py_decode(raw)
    assert decoded["h"] == TPDU + HEADER
    assert decoded["t"] == message["mti"]
    fields = py_fields(decoded)
    if message["mti"] in MAC_EXEMPT_MTIS:
        assert "64" not in fields, "sign-on and settlement carry no MAC"
        assert fields == message["fields"]
    else:
        assert "64" in fields, "our encoder did not fill the MAC"
        mac = cup_ecb_mac(MAK, raw[MTI_OFFSET:-8])
        assert bytes.fromhex(fields["64"]) == mac, (
            f"our MAC {bytes.fromhex(fields['64'])!r} != Python MAC {mac!r} over {raw[MTI_OFFSET:-8].hex().upper()}"
        )
        assert {k: v for k, v in fields.items() if k != "64"} == message["fields"]


@pytest.mark.parametrize("name", IDS)
def test_raw_bytes_identical(name):
    message = MESSAGES[name]
    theirs = py_encode(message)
    ours = cli_encode(message, mac_key=MAK_HEX)
    assert ours.hex().upper() == theirs.hex().upper()
    # Without a key our encoder leaves the MAC out, and the rest is still pyiso8583's bytes.
    unsigned, _ = iso8583.encode(py_doc(message), CUP_SPEC)
    assert cli_encode(message).hex().upper() == bytes(unsigned).hex().upper()


@pytest.mark.parametrize("name", ["sale_0200_pan19", "sign_on_0800"])
def test_framed_encoding_has_big_endian_length_prefix(name):
    message = MESSAGES[name]
    body = py_encode(message)
    framed = cli_encode(message, mac_key=MAK_HEX, framed=True)
    assert framed == len(body).to_bytes(2, "big") + body
    result = run_cli("decode", framed.hex().upper(), mac_key=MAK_HEX, framed=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["fields"] == py_fields(py_decode(body))


@pytest.mark.parametrize("name", ["sale_0200_pan19", "void_0200", "reversal_0400", "sale_reply_0210"])
def test_tampered_message_fails_our_mac_check(name):
    raw = bytearray(py_encode(MESSAGES[name]))
    # Change the last amount digit: ...45 -> ...44, still valid BCD, so only the MAC can tell.
    raw[field_spans(MESSAGES[name])[4][1] + 5] ^= 0x01
    tampered = cli_decode(bytes(raw), mac_key=MAK_HEX)
    assert tampered["fields"]["4"] != MESSAGES[name]["fields"]["4"]
    assert tampered["mac_ok"] is False
    # The same bytes under another key are rejected too.
    assert cli_decode(bytes(py_encode(MESSAGES[name])), mac_key="0123456789ABCDEF")["mac_ok"] is False


# ---------------------------------------------------------------------------------------------
# Garbled frames: our decoder must refuse them and say which field and where.
# ---------------------------------------------------------------------------------------------

ERROR_RE = re.compile(r"^error: field (\d+) \(([^)]+)\) at byte (\d+): \S.*$", re.MULTILINE)


def _garble(kind: str) -> tuple[bytes, int, tuple[int, int, int]]:
    """A garbled copy of the 19-digit-PAN sale, the field it breaks, and that field's span."""
    message = MESSAGES["sale_0200_pan19"]
    raw = bytearray(py_encode(message))
    spans = field_spans(message)
    if kind == "truncated_in_fixed_field":  # cut in the middle of field 42 (ans15)
        field = 42
        raw = raw[: spans[42][1] + 7]
    elif kind == "truncated_in_lllvar_data":  # cut in the middle of the ICC data
        field = 55
        raw = raw[: spans[55][1] + 3]
    elif kind == "truncated_in_length_prefix":  # cut between the two bytes of field 60's length
        field = 60
        raw = raw[: spans[60][0] + 1]
    elif kind == "bad_bcd_nibble_in_amount":
        field = 4
        raw[spans[4][1] + 4] = 0x1A
    elif kind == "bad_bcd_nibble_in_processing_code":
        field = 3
        raw[spans[3][1] + 2] = 0x0F
    elif kind == "bad_bcd_in_pan_length":
        field = 2
        raw[spans[2][0]] = 0x1A
    elif kind == "pan_length_over_max":  # 20 > n..19
        field = 2
        raw[spans[2][0]] = 0x20
    elif kind == "track2_length_over_max":  # 38 > z..37
        field = 35
        raw[spans[35][0]] = 0x38
    elif kind == "icc_length_over_max":  # 256 > b..255
        field = 55
        raw[spans[55][0] : spans[55][0] + 2] = b"\x02\x56"
    elif kind == "field60_length_over_max":  # 18 > n..17
        field = 60
        raw[spans[60][0] : spans[60][0] + 2] = b"\x00\x18"
    else:  # pragma: no cover
        raise AssertionError(kind)
    return bytes(raw), field, spans[field]


GARBLES = [
    "truncated_in_fixed_field",
    "truncated_in_lllvar_data",
    "truncated_in_length_prefix",
    "bad_bcd_nibble_in_amount",
    "bad_bcd_nibble_in_processing_code",
    "bad_bcd_in_pan_length",
    "pan_length_over_max",
    "track2_length_over_max",
    "icc_length_over_max",
    "field60_length_over_max",
]


@pytest.mark.parametrize("kind", GARBLES)
def test_garbled_frame_is_rejected_with_field_and_offset(kind):
    raw, field, (start, _data_start, end) = _garble(kind)
    result = run_cli("decode", raw.hex().upper(), mac_key=MAK_HEX)
    assert result.returncode != 0, f"our decoder accepted a garbled frame: {result.stdout}"
    assert result.stdout.strip() == ""
    match = ERROR_RE.search(result.stderr)
    assert match, f"error does not name a field and a byte offset: {result.stderr!r}"
    assert int(match.group(1)) == field, result.stderr
    offset = int(match.group(3))
    # The offset (from the start of the TPDU) points into the broken field: its length prefix,
    # its data, or, for a truncation, the end of the data given.
    assert start <= offset <= max(end, start), f"offset {offset} outside field {field} [{start}, {end}): {result.stderr}"
    assert offset <= len(raw), result.stderr


def test_garbled_frames_are_really_garbled_for_pyiso8583_too():
    """Where pyiso8583 checks the same thing, it refuses the same frames (so the garbling is real)."""
    for kind in [
        "truncated_in_fixed_field",
        "truncated_in_lllvar_data",
        "truncated_in_length_prefix",
        "bad_bcd_in_pan_length",
        "pan_length_over_max",
        "track2_length_over_max",
        "icc_length_over_max",
        "field60_length_over_max",
    ]:
        raw, field, _ = _garble(kind)
        with pytest.raises(iso8583.DecodeError) as info:
            py_decode(raw)
        assert info.value.field == str(field), (kind, str(info.value))
