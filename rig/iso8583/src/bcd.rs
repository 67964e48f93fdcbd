//! Packed BCD: two digits (or 'D' separators) per byte.

/// Packs `digits` into BCD. An odd count is padded with a zero nibble on the left
/// (`left_pad`) or on the right. Returns the first character that is not a digit
/// (or 'D'/'=' when `allow_separator`) as an error.
pub fn pack(digits: &str, left_pad: bool, allow_separator: bool) -> Result<Vec<u8>, char> {
    let mut nibbles = Vec::with_capacity(digits.len() + 1);
    if left_pad && digits.len() % 2 == 1 {
        nibbles.push(0);
    }
    for c in digits.chars() {
        nibbles.push(match c {
            '0'..='9' => c as u8 - b'0',
            'D' | 'd' | '=' if allow_separator => 0xD,
            _ => return Err(c),
        });
    }
    if nibbles.len() % 2 == 1 {
        nibbles.push(0);
    }
    Ok(nibbles.chunks(2).map(|p| (p[0] << 4) | p[1]).collect())
}

/// Unpacks `count` digits from BCD `bytes`, skipping the pad nibble of an odd count on the left
/// (`left_pad`) or right. Returns the index of the first bad nibble as an error.
pub fn unpack(bytes: &[u8], count: usize, left_pad: bool, allow_separator: bool) -> Result<String, usize> {
    let nibbles: Vec<u8> = bytes.iter().flat_map(|b| [b >> 4, b & 0x0F]).collect();
    let pad = nibbles.len() - count;
    let (pad_at, digits) = if left_pad {
        (0..pad, &nibbles[pad..])
    } else {
        (count..nibbles.len(), &nibbles[..count])
    };
    if let Some(i) = pad_at.clone().find(|&i| nibbles[i] != 0) {
        return Err(i);
    }
    let first = if left_pad { pad } else { 0 };
    digits
        .iter()
        .enumerate()
        .map(|(i, &n)| match n {
            0..=9 => Ok((b'0' + n) as char),
            0xD if allow_separator => Ok('D'),
            _ => Err(first + i),
        })
        .collect()
}

/// Reads a BCD length prefix as a number; `Err(())` when a nibble is not a digit.
pub fn read_length(bytes: &[u8]) -> Result<usize, ()> {
    bytes.iter().try_fold(0usize, |acc, b| {
        let (hi, lo) = (b >> 4, b & 0x0F);
        if hi > 9 || lo > 9 {
            Err(())
        } else {
            Ok(acc * 100 + usize::from(hi) * 10 + usize::from(lo))
        }
    })
}

/// Writes `value` as a BCD length prefix of `bytes` bytes.
pub fn write_length(value: usize, bytes: usize) -> Vec<u8> {
    let digits = format!("{value:0width$}", width = bytes * 2);
    pack(&digits, false, false).expect("formatted digits are always BCD")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_numbers_pad_on_the_chosen_side() {
        assert_eq!(pack("022", true, false).unwrap(), vec![0x00, 0x22]);
        assert_eq!(pack("123", false, false).unwrap(), vec![0x12, 0x30]);
        assert_eq!(unpack(&[0x00, 0x22], 3, true, false).unwrap(), "022");
        assert_eq!(unpack(&[0x12, 0x30], 3, false, false).unwrap(), "123");
    }

    #[test]
    fn track_separator_is_nibble_d() {
        assert_eq!(pack("12D4", false, true).unwrap(), vec![0x12, 0xD4]);
        assert_eq!(unpack(&[0x12, 0xD4], 4, false, true).unwrap(), "12D4");
        assert_eq!(pack("12D4", false, false), Err('D'));
    }

    #[test]
    fn bad_nibbles_are_reported_by_position() {
        assert_eq!(unpack(&[0x1A], 2, false, false), Err(1));
        assert_eq!(unpack(&[0x12, 0x35], 3, false, false), Err(3));
        assert_eq!(read_length(&[0x1F]), Err(()));
        assert_eq!(read_length(&[0x01, 0x23]), Ok(123));
        assert_eq!(write_length(17, 2), vec![0x00, 0x17]);
    }
}
