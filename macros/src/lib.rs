//! `svc_runtime::proto!`: generates the same modules as `protoc-gen-svc` at compile
//! time, with the embedded compiler (no protoc, no buf).
//!
//! ```ignore
//! svc_runtime::proto!("proto/greeter/v1/greeter.proto");
//! svc_runtime::proto!("greeter/v1/greeter.proto", includes = ["proto"], opt = "client=false");
//! ```
//!
//! Paths are relative to the crate root. The crate rebuilds when any .proto
//! it read changes. Errors point at the macro call and name the proto
//! file:line.

use proc_macro::TokenStream;
use quote::quote;
use syn::parse::{Parse, ParseStream};
use syn::{Expr, ExprArray, Lit, LitStr, Token};

struct Args {
    request: protoc_gen_svc::macro_support::MacroRequest,
}

impl Parse for Args {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let mut request = protoc_gen_svc::macro_support::MacroRequest::default();
        while !input.is_empty() {
            if input.peek(LitStr) {
                request.files.push(input.parse::<LitStr>()?.value());
            } else {
                let key: syn::Ident = input.parse()?;
                input.parse::<Token![=]>()?;
                match key.to_string().as_str() {
                    "includes" => {
                        let array: ExprArray = input.parse()?;
                        for e in array.elems {
                            match e {
                                Expr::Lit(syn::ExprLit { lit: Lit::Str(s), .. }) => request.includes.push(s.value()),
                                other => return Err(syn::Error::new_spanned(other, "includes takes string literals")),
                            }
                        }
                    }
                    "opt" => request.options = input.parse::<LitStr>()?.value(),
                    _ => {
                        return Err(syn::Error::new(
                            key.span(),
                            "expected a .proto path, `includes = [..]` or `opt = \"..\"`",
                        ));
                    }
                }
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(Args { request })
    }
}

/// Compiles .proto files at macro-expansion time into the module tree that
/// `protoc-gen-svc` writes as files.
#[proc_macro]
pub fn proto(input: TokenStream) -> TokenStream {
    let span_source = proc_macro2::TokenStream::from(input.clone());
    let args = match syn::parse::<Args>(input) {
        Ok(a) => a,
        Err(e) => return e.to_compile_error().into(),
    };
    let root = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".to_owned());
    let fail =
        |message: String| -> TokenStream { syn::Error::new_spanned(&span_source, message).to_compile_error().into() };
    let expansion = match protoc_gen_svc::macro_support::expand(&args.request, std::path::Path::new(&root)) {
        Ok(e) => e,
        Err(e) => return fail(e.to_string()),
    };
    let code: proc_macro2::TokenStream = match expansion.code.parse() {
        Ok(c) => c,
        Err(e) => {
            return fail(format!("protoc-gen-svc produced code that does not tokenize ({e}); please report this"));
        }
    };
    let tracked = expansion.tracked.iter().filter_map(|p| p.to_str()).map(|p| {
        quote!(
            const _: &[u8] = include_bytes!(#p);
        )
    });
    quote!(#(#tracked)* #code).into()
}
