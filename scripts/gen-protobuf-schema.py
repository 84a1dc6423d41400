#!/usr/bin/env python3
"""Generates crates/api/src/protobuf_schema.rs: the protobuf field layout of the Kubernetes types
Tugboat serves, read from the prost sources of the `k8s-pb` crate (generated from Kubernetes' own
generated.proto files). Only tags, scalar kinds and message types are taken; JSON field names are
resolved at run time from the OpenAPI schemas.

prost renames acronyms in type names (`HTTPGetAction` becomes `HttpGetAction`), so messages are
named after the k8s-openapi definition whose name matches case-insensitively: those are the names
the OpenAPI schemas are keyed by. k8s-openapi is read at the version and Kubernetes feature the
workspace builds with.

Usage: scripts/gen-protobuf-schema.py [K8S_PB_SRC_DIR [K8S_OPENAPI_VERSION_DIR]]
(defaults: k8s-pb 0.9.0 and the locked k8s-openapi in the local cargo registry; `cargo fetch`
fetches k8s-openapi, and a crate depending on k8s-pb 0.9 fetched once brings k8s-pb.)
"""
import glob
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, ".."))
TARGET = os.path.join(ROOT, "crates", "api", "src", "protobuf_schema.rs")

# Request bodies that are not served kinds: delete options and the subresources' bodies.
EXTRA_ROOTS = [
    "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions",
    "io.k8s.api.autoscaling.v1.Scale",
    "io.k8s.api.core.v1.Binding",
]

FIELD = re.compile(r'#\[prost\(([^)]*)\)\]\s*pub (?:r#)?(\w+):\s*', re.S)
STRUCT = re.compile(r'pub struct (\w+) \{(.*?)\n\}', re.S)
# The scalars the served types use, and so the decoder knows; others (double) only occur elsewhere.
SCALARS = {"string": "String", "bytes": "Bytes", "int32": "Int32", "int64": "Int64", "bool": "Bool"}


def module_name(module):
    return "io.k8s." + module.replace("/", ".")


def resolve(module, type_text):
    """The full (prost) name of the message a Rust type path written inside `module` refers to."""
    inner = "".join(type_text.split())
    for wrapper in ("::core::option::Option<", "::prost::alloc::vec::Vec<", "::prost::alloc::boxed::Box<",
                    "::prost::alloc::collections::BTreeMap<"):
        inner = inner.replace(wrapper, "")
    inner = inner.replace(">", "")
    if "," in inner:  # a map: the value is the last type argument
        inner = [part for part in inner.split(",") if part][-1]
    parts = inner.split("::")
    base = module.split("/")
    while parts and parts[0] == "super":
        base = base[:-1]
        parts = parts[1:]
    return module_name("/".join(base + parts[:-1])) + "." + parts[-1]


def field_type(body, start):
    """The Rust type that starts at `start`: up to the first comma outside angle brackets."""
    depth = 0
    for i in range(start, len(body)):
        c = body[i]
        if c == "<":
            depth += 1
        elif c == ">":
            depth -= 1
        elif c == "," and depth == 0:
            return body[start:i]
    return body[start:]


def scalar(name):
    """The Kind variant of a scalar; one the decoder lacks stays the proto name, refused on output."""
    return SCALARS.get(name, name)


def parse_k8s_pb(src):
    """{prost full name: [(tag, rust field name, repeated, kind, map key, map value, target)]}."""
    messages = {}
    for path in glob.glob(os.path.join(src, "**", "mod.rs"), recursive=True):
        module = os.path.relpath(os.path.dirname(path), src).replace(os.sep, "/")
        text = open(path).read()
        for struct in STRUCT.finditer(text):
            body = struct.group(2)
            fields = []
            for field in FIELD.finditer(body):
                attrs, rust_name = field.groups()
                type_text = field_type(body, field.end())
                tag = int(re.search(r'tag\s*=\s*"(\d+)"', attrs).group(1))
                repeated = re.search(r'\brepeated\b', attrs) is not None
                first = attrs.split(",")[0].strip()
                map_match = re.match(r'btree_map\s*=\s*"(\w+),\s*(\w+)"', attrs)
                if map_match:
                    key, value = map_match.groups()
                    target = resolve(module, type_text) if value == "message" else None
                    value_kind = "Message" if value == "message" else scalar(value)
                    fields.append((tag, rust_name, False, "Map", scalar(key), value_kind, target))
                elif first == "message":
                    fields.append((tag, rust_name, repeated, "Message", None, None, resolve(module, type_text)))
                else:
                    kind = scalar(first.split("=")[0].strip())  # `bytes = "vec"` is bytes
                    fields.append((tag, rust_name, repeated, kind, None, None, None))
            messages[module_name(module) + "." + struct.group(1)] = fields
    return messages


def openapi_names(openapi_dir):
    """{lowercased definition name: definition name} of every k8s-openapi type."""
    names = {}
    for path in glob.glob(os.path.join(openapi_dir, "**", "*.rs"), recursive=True):
        with open(path) as f:
            match = re.match(r'// Generated from definition (\S+)', f.readline())
        if match:
            names[match.group(1).lower()] = match.group(1)
    return names


def served_kinds(registry_source):
    """Definition names of the kinds `declarations()` registers (`kind::<core::Namespace>()`)."""
    aliases = dict((alias, f"{group}.{version}")
                   for group, version, alias in re.findall(r'(\w+)::(v\d\w*) as (\w+)\b', registry_source))
    return [f"io.k8s.api.{aliases[alias]}.{kind}" for alias, kind in re.findall(r'kind::<(\w+)::(\w+)>', registry_source)]


def reachable(messages, roots):
    seen, pending = set(), list(roots)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        if name not in messages:
            sys.exit(f"{name} is not in the k8s-pb sources")
        seen.add(name)
        pending.extend(field[-1] for field in messages[name] if field[-1])
    return seen


def default_dirs():
    registry = os.path.expanduser("~/.cargo/registry/src/*")
    pb = sorted(glob.glob(os.path.join(registry, "k8s-pb-0.9.0", "src")))
    lock = open(os.path.join(ROOT, "Cargo.lock")).read()
    openapi_version = re.search(r'name = "k8s-openapi"\nversion = "([^"]+)"', lock).group(1)
    feature = re.search(r'k8s-openapi\s*=.*?"(v1_\d+)"', open(os.path.join(ROOT, "Cargo.toml")).read()).group(1)
    openapi = sorted(glob.glob(os.path.join(registry, f"k8s-openapi-{openapi_version}", "src", feature)))
    return (pb[0] if pb else None), (openapi[0] if openapi else None)


def rust_kind(kind, target):
    if kind == "Message":
        return f'Kind::Message("{target}")'
    if kind not in SCALARS.values():
        sys.exit(f"a served type has a {kind} field: teach gen-protobuf-schema.py and protobuf.rs about it")
    return f"Kind::{kind}"


def main():
    pb_dir, openapi_dir = default_dirs()
    pb_dir = sys.argv[1] if len(sys.argv) > 1 else pb_dir
    openapi_dir = sys.argv[2] if len(sys.argv) > 2 else openapi_dir
    if not pb_dir or not os.path.isdir(pb_dir):
        sys.exit("k8s-pb 0.9.0 sources not found; pass their src/ directory")
    if not openapi_dir or not os.path.isdir(openapi_dir):
        sys.exit("k8s-openapi sources not found (run `cargo fetch`); pass their src/v1_NN directory")

    exact = openapi_names(openapi_dir)

    def rename(name):
        return exact.get(name.lower(), name)

    messages = {
        rename(name): [(tag, rust_name, repeated, kind, key, value, target and rename(target))
                       for tag, rust_name, repeated, kind, key, value, target in fields]
        for name, fields in parse_k8s_pb(pb_dir).items()
    }
    registry = open(os.path.join(ROOT, "crates", "api", "src", "registry.rs")).read()
    keep = sorted(reachable(messages, served_kinds(registry) + EXTRA_ROOTS))

    out = ["// @generated by scripts/gen-protobuf-schema.py from the k8s-pb 0.9.0 sources; do not edit.",
           "//! Protobuf field layout of the served Kubernetes types, by OpenAPI definition name: tag,",
           "//! field name (prost's snake_case; the JSON name is resolved from the OpenAPI schema), and kind.",
           "",
           "use crate::protobuf::{Field, Kind, Message};",
           "",
           "pub(crate) static MESSAGES: &[Message] = &["]
    for name in keep:
        out.append(f'    Message {{ name: "{name}", fields: &[')
        for tag, rust_name, repeated, kind, key, value, target in sorted(messages[name]):
            if kind == "Map":
                kind_text = f"Kind::Map(&Kind::{key}, &{rust_kind(value, target)})"
            else:
                kind_text = rust_kind(kind, target)
            out.append(f'        Field {{ tag: {tag}, name: "{rust_name}", repeated: {str(repeated).lower()}, '
                       f'kind: {kind_text} }},')
        out.append("    ] },")
    out.append("];")
    with open(TARGET, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"{len(keep)} messages written to {os.path.relpath(TARGET, ROOT)}")


if __name__ == "__main__":
    main()
