//! Compile tests of generated code. Each module includes what build.rs
//! generated for one parameter combination; the crate denies warnings, so a
//! warning in generated code fails the build (and clippy checks it too).
//!
//! A proto with bad annotations stops compilation at the macro call:
//!
//! ```compile_fail
//! svc_runtime::proto!("protos/bad/bad_annotations.proto");
//! ```
//!
//! while a valid one expands:
//!
//! ```
//! svc_runtime::proto!("protos/maximal/shop.proto");
//! assert_eq!(shop::v1::shop_svc::SERVICE.port, 8443);
//! ```
#![deny(warnings)]

/// Default parameters.
pub mod default {
    include!(concat!(env!("OUT_DIR"), "/default/mod.rs"));
}

/// `server=false`.
pub mod client_only {
    include!(concat!(env!("OUT_DIR"), "/client_only/mod.rs"));
}

/// `client=false`.
pub mod server_only {
    include!(concat!(env!("OUT_DIR"), "/server_only/mod.rs"));
}

/// `messages=false` services combined with a messages-only run: each
/// package's module includes its file from both runs. Packages of one run
/// link to each other's descriptors (as prost links their types), so the
/// whole package tree is laid out, with the lints the include file allows.
#[allow(clippy::module_inception)]
pub mod split {
    /// Includes `$file` from the messages-only and the services-only run.
    macro_rules! both_runs {
        ($file:literal) => {
            include!(concat!(env!("OUT_DIR"), "/messages_only/", $file));
            include!(concat!(env!("OUT_DIR"), "/services_only/", $file));
        };
    }
    /// Adversarial packages.
    pub mod adversarial {
        /// proto2 features.
        pub mod legacy {
            both_runs!("adversarial.legacy.rs");
        }
        /// Keywords as package parts.
        pub mod r#type {
            /// Keywords as package parts.
            pub mod r#async {
                both_runs!("adversarial.type.async.rs");
            }
        }
    }
    /// The greeter package.
    pub mod greeter {
        /// Version 1.
        pub mod v1 {
            both_runs!("greeter.v1.rs");
        }
    }
    /// The meter package.
    pub mod meter {
        /// Version 1.
        pub mod v1 {
            both_runs!("meter.v1.rs");
        }
    }
    /// The rules package.
    pub mod rules {
        /// Version 1.
        pub mod v1 {
            both_runs!("rules.v1.rs");
        }
    }
    /// The shop package.
    pub mod shop {
        /// Version 1.
        pub mod v1 {
            both_runs!("shop.v1.rs");
        }
    }
    /// The vault package.
    pub mod vault {
        /// Version 1.
        pub mod v1 {
            both_runs!("vault.v1.rs");
        }
    }
}

/// Packages `cycle.a` and `cycle.b`, which import each other.
pub mod cyclic {
    include!(concat!(env!("OUT_DIR"), "/cycle/mod.rs"));
}

/// `bytes=.` and `btree_map=.`.
pub mod bytes_btree {
    include!(concat!(env!("OUT_DIR"), "/bytes_btree/mod.rs"));
}

/// `type_attribute`, `field_attribute` and `include_file=tree.rs`.
pub mod attributes {
    include!(concat!(env!("OUT_DIR"), "/attributes/tree.rs"));
}

/// `runtime_crate=crate::rt`: generated code reaches the runtime through a
/// path of the user's choosing.
pub mod runtime_path {
    include!(concat!(env!("OUT_DIR"), "/runtime_path/mod.rs"));
}

/// The runtime under another path, for `runtime_path`.
pub mod rt {
    pub use svc_runtime::*;
}

/// `extern_path=.adversarial.legacy=crate::default::adversarial::legacy`.
pub mod extern_path {
    include!(concat!(env!("OUT_DIR"), "/extern_path/mod.rs"));
}
