//! Rewrites the paths that tonic-build hard-codes (`tonic::...`) so that
//! generated code names only the runtime crate (`<runtime>::codegen::tonic`)
//! and std, shortens prost-build's `<runtime>::codegen::prost::alloc::...`
//! to `::std::...`, and applies [`docs::sanitize`] to every item.

use syn::visit_mut::{self, VisitMut};

use super::docs;

/// Rewrites `tonic::` paths and sanitizes docs in `file`.
pub fn rewrite(file: &mut syn::File, runtime: &str) {
    let prefix: syn::Path =
        syn::parse_str(&format!("{runtime}::codegen")).unwrap_or_else(|_| syn::parse_quote!(::svc_runtime::codegen));
    let mut v = Rewriter { prefix };
    v.visit_file_mut(file);
    sanitize_attrs(&mut file.attrs);
}

/// Implements visitor methods that sanitize an item's docs, then recurse.
macro_rules! sanitizing {
    ($($method:ident: $ty:ty),* $(,)?) => {
        $(
            fn $method(&mut self, node: &mut $ty) {
                sanitize_attrs(&mut node.attrs);
                visit_mut::$method(self, node);
            }
        )*
    };
}

struct Rewriter {
    prefix: syn::Path,
}

impl Rewriter {
    /// In `<T as tonic::a::B>::C` the qualified-self position counts the
    /// trait's segments; keep it pointing at the end of the trait path once
    /// the prefix is inserted.
    fn shift_qself(&self, qself: &mut Option<syn::QSelf>, path: &syn::Path) {
        if let Some(q) = qself
            && q.position > 0
            && path.segments.first().is_some_and(|s| s.ident == "tonic")
        {
            q.position += self.prefix.segments.len();
        }
    }
}

impl Rewriter {
    /// Whether `path` is `<runtime>::codegen::prost::alloc::<item>...`: the
    /// `alloc` re-export prost-build names for `String`, `Vec` and `Box`.
    fn is_prost_alloc(&self, path: &syn::Path) -> bool {
        let n = self.prefix.segments.len();
        path.leading_colon.is_some() == self.prefix.leading_colon.is_some()
            && path.segments.len() > n + 2
            && path.segments.iter().zip(&self.prefix.segments).all(|(a, b)| a.ident == b.ident)
            && path.segments[n].ident == "prost"
            && path.segments[n + 1].ident == "alloc"
    }
}

impl VisitMut for Rewriter {
    fn visit_path_mut(&mut self, path: &mut syn::Path) {
        if path.segments.first().is_some_and(|s| s.ident == "tonic") {
            let mut new = self.prefix.clone();
            new.segments.extend(std::mem::take(&mut path.segments));
            *path = new;
        } else if self.is_prost_alloc(path) {
            // `::std::string::String` reads better and is much shorter than
            // the same type through the runtime's prost re-export (std
            // re-exports every `alloc` module under the same path).
            let rest: Vec<syn::PathSegment> =
                std::mem::take(&mut path.segments).into_iter().skip(self.prefix.segments.len() + 2).collect();
            let mut new: syn::Path = syn::parse_quote!(::std);
            new.segments.extend(rest);
            *path = new;
        }
        visit_mut::visit_path_mut(self, path);
    }

    fn visit_type_path_mut(&mut self, node: &mut syn::TypePath) {
        self.shift_qself(&mut node.qself, &node.path);
        visit_mut::visit_type_path_mut(self, node);
    }

    fn visit_expr_path_mut(&mut self, node: &mut syn::ExprPath) {
        self.shift_qself(&mut node.qself, &node.path);
        visit_mut::visit_expr_path_mut(self, node);
    }

    fn visit_item_use_mut(&mut self, item: &mut syn::ItemUse) {
        if let syn::UseTree::Path(p) = &item.tree
            && p.ident == "tonic"
        {
            let old = item.tree.clone();
            let mut tree = old;
            for seg in self.prefix.segments.iter().rev() {
                tree = syn::UseTree::Path(syn::UsePath {
                    ident: seg.ident.clone(),
                    colon2_token: Default::default(),
                    tree: Box::new(tree),
                });
            }
            item.tree = tree;
            if self.prefix.leading_colon.is_some() {
                item.leading_colon = Some(Default::default());
            }
        }
        visit_mut::visit_item_use_mut(self, item);
    }

    sanitizing! {
        visit_item_struct_mut: syn::ItemStruct,
        visit_item_enum_mut: syn::ItemEnum,
        visit_item_mod_mut: syn::ItemMod,
        visit_item_fn_mut: syn::ItemFn,
        visit_item_trait_mut: syn::ItemTrait,
        visit_item_const_mut: syn::ItemConst,
        visit_item_static_mut: syn::ItemStatic,
        visit_item_type_mut: syn::ItemType,
        visit_item_impl_mut: syn::ItemImpl,
        visit_trait_item_fn_mut: syn::TraitItemFn,
        visit_impl_item_fn_mut: syn::ImplItemFn,
        visit_impl_item_const_mut: syn::ImplItemConst,
        visit_field_mut: syn::Field,
        visit_variant_mut: syn::Variant,
    }
}

/// Replaces the `#[doc = "..."]` attributes of one item with sanitized ones,
/// keeping their position before the other attributes.
fn sanitize_attrs(attrs: &mut Vec<syn::Attribute>) {
    let mut lines = Vec::new();
    let mut first = None;
    for (i, a) in attrs.iter().enumerate() {
        if let Some(text) = doc_text(a) {
            first.get_or_insert(i);
            lines.extend(text.split('\n').map(str::to_owned));
        }
    }
    let Some(first) = first else { return };
    let style = attrs[first].style;
    let cleaned = docs::sanitize(&lines);
    let new_docs = cleaned.into_iter().map(|line| {
        let lit = syn::LitStr::new(&line, proc_macro2::Span::call_site());
        let mut attr: syn::Attribute = syn::parse_quote!(#[doc = #lit]);
        attr.style = style;
        attr
    });
    let mut rest: Vec<syn::Attribute> = Vec::with_capacity(attrs.len());
    let mut inserted = false;
    let mut new_docs = Some(new_docs);
    for a in attrs.drain(..) {
        if doc_text(&a).is_some() {
            if !inserted {
                rest.extend(new_docs.take().into_iter().flatten());
                inserted = true;
            }
        } else {
            rest.push(a);
        }
    }
    *attrs = rest;
}

fn doc_text(a: &syn::Attribute) -> Option<String> {
    if !a.path().is_ident("doc") {
        return None;
    }
    match &a.meta {
        syn::Meta::NameValue(nv) => match &nv.value {
            syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) => Some(s.value()),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(code: &str, runtime: &str) -> String {
        let mut file: syn::File = syn::parse_str(code).expect("parses");
        rewrite(&mut file, runtime);
        prettyplease::unparse(&file)
    }

    #[test]
    fn prost_alloc_paths_become_std_and_tonic_paths_go_through_the_runtime() {
        let code = "pub struct A { pub s: ::svc_runtime::codegen::prost::alloc::string::String, \
                    pub v: ::svc_runtime::codegen::prost::alloc::vec::Vec<u8>, \
                    pub m: ::svc_runtime::codegen::prost::Message, \
                    pub o: ::other::codegen::prost::alloc::string::String, \
                    pub t: tonic::Status }";
        let out = rewritten(code, "::svc_runtime");
        assert!(out.contains("pub s: ::std::string::String"), "{out}");
        assert!(out.contains("pub v: ::std::vec::Vec<u8>"), "{out}");
        assert!(out.contains("pub m: ::svc_runtime::codegen::prost::Message"), "{out}");
        assert!(out.contains("pub o: ::other::codegen::prost::alloc::string::String"), "{out}");
        assert!(out.contains("pub t: ::svc_runtime::codegen::tonic::Status"), "{out}");
        let out = rewritten("pub struct B { pub s: crate::rt::codegen::prost::alloc::string::String }", "crate::rt");
        assert!(out.contains("pub s: ::std::string::String"), "{out}");
        // A leading `::` must match the runtime path's.
        let out = rewritten("pub struct C { pub s: ::crate::rt::codegen::prost::alloc::string::String }", "crate::rt");
        assert!(!out.contains("::std::"), "{out}");
    }
}
