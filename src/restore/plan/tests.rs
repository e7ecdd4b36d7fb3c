use super::*;

#[test]
fn from_spec() {
    assert_eq!(split_from("/b"), ("/b", "latest"));
    assert_eq!(split_from("/b:20261121T0"), ("/b", "20261121T0"));
    assert_eq!(split_from("s3://x/y"), ("s3://x/y", "latest"));
    assert_eq!(split_from("s3://x/y:latest"), ("s3://x/y", "latest"));
}

#[test]
fn bump_support() {
    assert_eq!(supports_bump("3.5.16"), Some(true));
    assert_eq!(supports_bump("3.5.1"), Some(false));
    assert_eq!(supports_bump("3.4"), Some(false));
    assert_eq!(supports_bump("3.5"), None);
}
