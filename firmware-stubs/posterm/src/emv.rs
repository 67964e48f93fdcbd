//! The little EMV the terminal needs: picking the tags a reversal carries out of the card's ICC
//! data (BER-TLV).

/// Tags a reversal's field 55 carries when the card data has them: TVR, issuer application data,
/// interface device serial number, application transaction counter.
const REVERSAL_TAGS: [&[u8]; 4] = [&[0x95], &[0x9F, 0x10], &[0x9F, 0x1E], &[0x9F, 0x36]];

/// Cryptogram information data, 9F27.
const CRYPTOGRAM_INFORMATION: &[u8] = &[0x9F, 0x27];

/// The reversal tags of `icc`, in the order of [`REVERSAL_TAGS`]; with `cryptogram` set (e.g.
/// 0x00 for an AAC), 9F27 with that value follows. Malformed TLV ends the scan where it starts.
pub fn reversal_tags(icc: &[u8], cryptogram: Option<u8>) -> Vec<u8> {
    let elements = parse(icc);
    let mut out = Vec::new();
    for wanted in REVERSAL_TAGS {
        if let Some((tag, value)) = elements.iter().find(|(tag, _)| *tag == wanted) {
            out.extend_from_slice(tag);
            out.push(value.len() as u8);
            out.extend_from_slice(value);
        }
    }
    if let Some(cid) = cryptogram {
        out.extend_from_slice(CRYPTOGRAM_INFORMATION);
        out.extend_from_slice(&[1, cid]);
    }
    out
}

/// Splits BER-TLV into (tag, value) pairs; stops at the first element that does not fit.
fn parse(mut data: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut elements = Vec::new();
    while let Some((tag, value, rest)) = next_element(data) {
        elements.push((tag, value));
        data = rest;
    }
    elements
}

fn next_element(data: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let first = *data.first()?;
    let mut tag_len = 1;
    if first & 0x1F == 0x1F {
        while data.get(tag_len)? & 0x80 != 0 {
            tag_len += 1;
        }
        tag_len += 1;
    }
    let (length, length_len) = match *data.get(tag_len)? {
        short if short < 0x80 => (usize::from(short), 1),
        0x81 => (usize::from(*data.get(tag_len + 1)?), 2),
        _ => return None,
    };
    let start = tag_len + length_len;
    let value = data.get(start..start + length)?;
    Some((&data[..tag_len], value, &data[start + length..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reversal_keeps_the_counter_and_reports_the_aac() {
        // 9F26 (ARQC), 9F27 = 80 (ARQC), 9F36 = 0017 (ATC)
        let icc = hex::decode("9F260811223344556677889F2701809F36020017").unwrap();
        assert_eq!(hex::encode_upper(reversal_tags(&icc, None)), "9F36020017");
        assert_eq!(
            hex::encode_upper(reversal_tags(&icc, Some(0))),
            "9F360200179F270100"
        );
    }

    #[test]
    fn malformed_data_gives_what_came_before_it() {
        let icc = hex::decode("9F3602001795FF").unwrap();
        assert_eq!(hex::encode_upper(reversal_tags(&icc, None)), "9F36020017");
        assert!(reversal_tags(&[0x9F], None).is_empty());
    }
}
