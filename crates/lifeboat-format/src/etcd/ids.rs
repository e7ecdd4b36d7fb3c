//! etcd's member and cluster ids: `u64`s that etcd prints, and lifeboat writes in plans,
//! reports and manifests, as lower-case hex without padding (`8e9e05c52164694d`), as
//! `etcdctl member list -w table` shows them.
//!
//! Typed so a member id is never passed where a cluster id belongs, and so the hex form is
//! made and parsed in one place.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! hex_id {
    ($name:ident, $what:literal) => {
        #[doc = concat!("An etcd ", $what, " id; shown and stored as hex.")]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub u64);

        impl fmt::Display for $name {
            /// Honours width and alignment, as a string would (tables pad ids).
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(&format!("{:x}", self.0))
            }
        }

        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = String;
            /// Hex, with or without `0x`, any case (as etcd and etcdctl print ids).
            fn from_str(s: &str) -> Result<Self, String> {
                let t = s.trim();
                let t = t
                    .strip_prefix("0x")
                    .or_else(|| t.strip_prefix("0X"))
                    .unwrap_or(t);
                if t.is_empty() || t.len() > 16 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(format!(
                        "{s:?} is not a {} id (hex, up to 16 digits)",
                        $what
                    ));
                }
                u64::from_str_radix(t, 16)
                    .map($name)
                    .map_err(|_| format!("{s:?} is not a {} id (hex, up to 16 digits)", $what))
            }
        }

        impl From<u64> for $name {
            fn from(v: u64) -> Self {
                $name(v)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                other.parse::<$name>().is_ok_and(|o| o == *self)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hex_id!(MemberId, "member");
hex_id!(ClusterId, "cluster");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_both_ways_and_in_json() {
        let m = MemberId(0x8e9e05c52164694d);
        assert_eq!(m.to_string(), "8e9e05c52164694d");
        assert_eq!(
            MemberId(0xab).to_string(),
            "ab",
            "no padding, as etcdctl prints"
        );
        assert_eq!("8E9E05C52164694D".parse::<MemberId>(), Ok(m));
        assert_eq!("0x8e9e05c52164694d".parse::<MemberId>(), Ok(m));
        assert_eq!(serde_json::to_string(&m).unwrap(), "\"8e9e05c52164694d\"");
        let back: MemberId = serde_json::from_str("\"8e9e05c52164694d\"").unwrap();
        assert_eq!(back, m);
        assert!(m == *"8e9e05c52164694d");
        assert_eq!(
            format!("[{:<18}]", m),
            "[8e9e05c52164694d  ]",
            "padded as a string"
        );
        assert_eq!(format!("[{:>4}]", ClusterId(0xab)), "[  ab]");
    }

    proptest::proptest! {
        #[test]
        fn any_id_round_trips_and_any_text_parses_or_errs(v: u64, s in "\\PC{0,24}") {
            proptest::prop_assert_eq!(MemberId(v).to_string().parse::<MemberId>(), Ok(MemberId(v)));
            proptest::prop_assert_eq!(format!("0x{v:X}").parse::<ClusterId>(), Ok(ClusterId(v)));
            let _ = s.parse::<MemberId>();
        }
    }

    #[test]
    fn not_an_id_is_an_error_naming_it() {
        for s in ["", "xyz", "12345678901234567", "-1", "+1"] {
            let e = s.parse::<ClusterId>().unwrap_err();
            assert!(e.contains("cluster id"), "{e}");
        }
        assert!(serde_json::from_str::<ClusterId>("\"nope\"").is_err());
        assert!(serde_json::from_str::<ClusterId>("12").is_err());
    }
}
