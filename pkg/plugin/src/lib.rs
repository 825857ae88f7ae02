//! Skiff's plugin protocol and the SDK for plugin authors.
//!
//! A plugin is an executable Skiff starts when it first needs it: it serves the gRPC
//! service of `proto/skiff/plugin/v1` on the Unix socket Skiff names, announces itself
//! with one [handshake](handshake) line on stdout, and exits when its stdin closes (so
//! a host that dies, even by SIGKILL, never leaves it behind). A [`Manifest`] beside it
//! declares its name, version, protocol, capabilities and the sha256 of the
//! executable; Skiff refuses to start an executable whose digest does not match.
//!
//! Writing one takes a few lines: implement [`skiff_sagaapi::Step`] (the same trait
//! Skiff's own steps implement) or [`Check`], then
//!
//! ```no_run
//! # async fn f(step: impl skiff_sagaapi::Step + 'static) {
//! skiff_plugin::Plugin::new("changelog", "0.1.0").step(step).serve().await;
//! # }
//! ```
//!
//! The host side (discovery, digest checks, deadlines, crash isolation) lives in
//! Skiff's `skiff-plugins` crate; this one is all a plugin builds against.
#![warn(missing_docs)]

pub mod conformance;
mod manifest;
mod serve;
pub mod wire;

pub use manifest::{MANIFEST_FILE, Manifest, ManifestError};
pub use serve::{Addon, AddonAnswer, AddonHook, Check, CheckContext, Plugin, Recipe, RecipeAnswer};

/// The generated messages, client and server of `skiff.plugin.v1`.
#[allow(missing_docs, reason = "generated code; the .proto documents it")]
#[allow(unreachable_pub, reason = "generated code")]
#[allow(missing_debug_implementations, reason = "generated code")]
#[allow(clippy::all, reason = "generated code")]
#[allow(clippy::allow_attributes_without_reason, reason = "generated code")]
#[allow(clippy::pedantic, reason = "generated code")]
pub mod proto {
    tonic::include_proto!("skiff.plugin.v1");
}

/// The protocol version this build speaks. A host refuses a plugin (and a plugin a
/// host) that speaks another.
pub const PROTOCOL: u32 = 1;

/// The variable the host sets to [`COOKIE`] when it starts a plugin: a plugin started
/// by hand says what it is instead of waiting for a host.
pub const COOKIE_VAR: &str = "SKIFF_PLUGIN_COOKIE";

/// The value of [`COOKIE_VAR`].
pub const COOKIE: &str = "d1a3c0de-skiff-plugin";

/// The variable naming the Unix socket the plugin listens on.
pub const SOCKET_VAR: &str = "SKIFF_PLUGIN_SOCKET";

/// The handshake line: `skiff-plugin|PROTOCOL|unix|PATH|grpc`.
pub mod handshake {
    /// The line a plugin prints once it listens on `socket`.
    pub fn line(socket: &str) -> String {
        format!("skiff-plugin|{}|unix|{socket}|grpc", super::PROTOCOL)
    }

    /// The socket a handshake line names, or why the line is not one this host speaks.
    pub fn parse(line: &str) -> Result<String, String> {
        let parts: Vec<&str> = line.trim_end().split('|').collect();
        match parts.as_slice() {
            ["skiff-plugin", protocol, "unix", path, "grpc"] if !path.is_empty() => {
                if *protocol == super::PROTOCOL.to_string() {
                    Ok((*path).to_owned())
                } else {
                    Err(format!("it speaks plugin protocol {protocol}; this Skiff speaks {}", super::PROTOCOL))
                }
            }
            _ => Err(format!("its first line is not a handshake (`{}`): {:?}", line_shape(), clip(line))),
        }
    }

    fn line_shape() -> &'static str {
        "skiff-plugin|PROTOCOL|unix|PATH|grpc"
    }

    fn clip(s: &str) -> String {
        s.trim_end().chars().take(120).collect()
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn round_trips_and_refuses_garbage() {
            assert_eq!(super::parse(&super::line("/tmp/p.sock")).unwrap(), "/tmp/p.sock");
            assert!(super::parse("hello").unwrap_err().contains("not a handshake"));
            assert!(super::parse("skiff-plugin|9|unix|/x|grpc").unwrap_err().contains("protocol 9"));
        }
    }
}
