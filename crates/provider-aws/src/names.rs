//! How Skiff's provider-neutral names become AWS names, and the tags that make every
//! creation idempotent and every resource findable again.

use sha2::{Digest, Sha256};

/// Tag: the service a resource belongs to.
pub const TAG_SERVICE: &str = "skiff:service";
/// Tag: the release a resource belongs to.
pub const TAG_RELEASE: &str = "skiff:release";
/// Tag: the operation that created it.
pub const TAG_OPERATION: &str = "skiff:operation";
/// Tag: Skiff's own name for a resource whose AWS name had to be shortened.
pub const TAG_NAME: &str = "skiff:name";
/// Tag: the port instances of a group serve on.
pub const TAG_PORT: &str = "skiff:port";
/// Tag: when a target group was created (ms since the epoch), where its stats start.
pub const TAG_CREATED: &str = "skiff:created-ms";

/// The first `n` hex digits of sha256(`s`).
pub fn short_hash(s: &str, n: usize) -> String {
    let digest = hex::encode(Sha256::digest(s.as_bytes()));
    digest[..n.min(digest.len())].to_owned()
}

/// A name AWS accepts where only `[A-Za-z0-9-]` and at most `max` characters are
/// allowed (target groups and load balancers: 32): readable prefix plus a hash of the
/// full name, so two long names never collide.
pub fn short_name(prefix: &str, name: &str, max: usize) -> String {
    let clean: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let whole = format!("{prefix}{clean}");
    if whole.len() <= max && clean == name && !whole.ends_with('-') {
        return whole;
    }
    let hash = short_hash(name, 8);
    let room = max.saturating_sub(hash.len() + 1);
    let head: String = whole.chars().take(room).collect();
    format!("{}-{hash}", head.trim_end_matches('-'))
}

/// The target group's AWS name.
pub fn target_group(name: &str) -> String {
    short_name("sk-", name, 32)
}

/// The service's load balancer.
pub fn load_balancer(service: &str) -> String {
    short_name("skiff-", service, 32)
}

/// The launch template of a group (one per release).
pub fn launch_template(group: &str) -> String {
    format!("skiff-{group}")
}

/// The security group the service's load balancer sits in.
pub fn lb_security_group(service: &str) -> String {
    format!("skiff-{service}-lb")
}

/// The security group the service's instances sit in (ingress from the LB only).
pub fn instance_security_group(service: &str) -> String {
    format!("skiff-{service}-instances")
}

/// The Secrets Manager secret holding every key of a `secret://NAME/…` reference.
pub fn secret(name: &str) -> String {
    format!("skiff/{name}")
}

/// Splits `secret://name/key` into its name and key; `secret://name` is the key `value`.
pub fn parse_secret_ref(reference: &str) -> Option<(&str, &str)> {
    let rest = reference.strip_prefix("secret://")?;
    let (name, key) = rest.split_once('/').unwrap_or((rest, "value"));
    (!name.is_empty() && !key.is_empty()).then_some((name, key))
}

/// The KMS alias of the key that encrypts state and secrets.
pub const KMS_ALIAS: &str = "alias/skiff";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_fit_and_stay_distinct() {
        assert_eq!(target_group("web-1"), "sk-web-1");
        let a = target_group("payments-api-2026.11.22.1");
        let b = target_group("payments-api-2026.11.22.2");
        assert!(a.len() <= 32 && b.len() <= 32, "{a} {b}");
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'), "{a}");
        assert!(!a.ends_with('-') && !a.contains("--"), "{a}");
        assert_eq!(load_balancer("hello"), "skiff-hello");
        assert!(load_balancer(&"x".repeat(63)).len() <= 32);
    }

    #[test]
    fn secret_references_split_into_name_and_key() {
        assert_eq!(parse_secret_ref("secret://db/url"), Some(("db", "url")));
        assert_eq!(parse_secret_ref("secret://db"), Some(("db", "value")));
        assert_eq!(parse_secret_ref("secret://"), None);
        assert_eq!(parse_secret_ref("db/url"), None);
    }
}
