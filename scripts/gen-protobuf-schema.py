#!/usr/bin/env python3
"""Generates crates/api/src/protobuf_schema.rs: the protobuf field layout of the Kubernetes types
Tugboat serves, read from the prost sources of the `k8s-pb` crate (which are generated from
Kubernetes' own generated.proto files). Only tags, scalar kinds and message types are taken; JSON
field names are resolved at run time from the OpenAPI schemas.

Usage: scripts/gen-protobuf-schema.py [K8S_PB_SRC_DIR]
(default: the k8s-pb 0.9.0 sources in the local cargo registry; `cargo fetch` a crate that
depends on k8s-pb 0.9 once to get them.)
"""
import glob
import os
import re
import sys

# Module directories (relative to k8s-pb's src/) whose messages may be reachable.
MODULES = [
    "api/core/v1", "api/apps/v1", "api/batch/v1", "api/autoscaling/v1", "api/autoscaling/v2",
    "api/coordination/v1", "api/discovery/v1", "api/networking/v1", "api/rbac/v1",
    "api/events/v1", "api/scheduling/v1", "api/policy/v1",
    "apimachinery/pkg/apis/meta/v1", "apimachinery/pkg/api/resource",
    "apimachinery/pkg/util/intstr", "apimachinery/pkg/runtime",
]
# Messages decoding starts from: every served kind, plus the request bodies of subresources.
ROOT_SUFFIXES = ["DeleteOptions", "Scale", "Binding", "Eviction"]

FIELD = re.compile(r'#\[prost\(([^)]*)\)\]\s*pub (r#)?(\w+):\s*', re.S)
STRUCT = re.compile(r'pub struct (\w+) \{(.*?)\n\}', re.S)


def module_name(path):
    return "io.k8s." + path.replace("/", ".")


def resolve(module, type_text):
    """The message's full name for a Rust type path written inside `module`."""
    inner = "".join(type_text.split())
    for wrapper in ("::core::option::Option<", "::prost::alloc::vec::Vec<", "::prost::alloc::boxed::Box<",
                    "::prost::alloc::collections::BTreeMap<"):
        inner = inner.replace(wrapper, "")
    inner = inner.replace(">", "").strip()
    if "," in inner:  # map value: the last non-empty type argument
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


def scalar(text):
    text = text.strip().strip('"')
    return {"string": "String", "bytes": "Bytes", "int32": "Int32", "int64": "Int64", "bool": "Bool",
            "double": "Double", "float": "Float", "message": "Message"}[text]


def parse(src):
    messages = {}
    for module in MODULES:
        path = os.path.join(src, module, "mod.rs")
        if not os.path.exists(path):
            continue
        text = open(path).read()
        for struct in STRUCT.finditer(text):
            name = module_name(module) + "." + struct.group(1)
            fields = []
            body = struct.group(2)
            for field in FIELD.finditer(body):
                attrs, _, rust_name = field.groups()
                type_text = field_type(body, field.end())
                tag = int(re.search(r'tag\s*=\s*"(\d+)"', attrs).group(1))
                repeated = "repeated" in attrs
                map_match = re.search(r'btree_map\s*=\s*"(\w+),\s*(\w+)"', attrs)
                if map_match:
                    key, value = map_match.groups()
                    target = resolve(module, type_text) if value == "message" else None
                    kind = ("Map", scalar(key), scalar(value), target)
                elif attrs.startswith("bytes"):
                    kind = ("Bytes", None, None, None)
                else:
                    first = attrs.split(",")[0].strip()
                    target = resolve(module, type_text) if first == "message" else None
                    kind = (scalar(first), None, None, target)
                fields.append((tag, rust_name, repeated, kind))
            messages[name] = fields
    return messages


def reachable(messages, roots):
    seen, pending = set(), list(roots)
    while pending:
        name = pending.pop()
        if name in seen or name not in messages:
            continue
        seen.add(name)
        for _, _, _, (_, _, _, target) in messages[name]:
            if target:
                pending.append(target)
    return seen


def roots(messages, registry_source):
    found = set()
    for alias, kind in re.findall(r'kind::<(\w+)::(\w+)>', registry_source):
        found.add(f"io.k8s.api.{alias_version(alias, registry_source)}.{kind}")
    for name in messages:
        if name.rsplit(".", 1)[1] in ROOT_SUFFIXES:
            found.add(name)
    return found


def alias_version(alias, registry_source):
    """`core` in `use k8s_openapi::api::{core::v1 as core}` is `core.v1`."""
    match = re.search(r'(\w+)::(v\d+) as ' + alias + r'\b', registry_source)
    return f"{match.group(1)}.{match.group(2)}" if match else alias


def main():
    default = glob.glob(os.path.expanduser("~/.cargo/registry/src/*/k8s-pb-0.9.0/src"))
    src = sys.argv[1] if len(sys.argv) > 1 else (default[0] if default else None)
    if not src or not os.path.isdir(src):
        sys.exit("k8s-pb 0.9.0 sources not found; pass their src/ directory")
    here = os.path.dirname(os.path.abspath(__file__))
    registry = open(os.path.join(here, "..", "crates", "api", "src", "registry.rs")).read()
    messages = parse(src)
    keep = sorted(reachable(messages, roots(messages, registry)))
    out = ["// @generated by scripts/gen-protobuf-schema.py from the k8s-pb 0.9.0 sources; do not edit.",
           "//! Protobuf field layout of the served Kubernetes types: tag, field name (prost's",
           "//! snake_case; the JSON name is resolved from the OpenAPI schema), and wire kind.",
           "",
           "use crate::protobuf::{Field, Kind, Message};",
           "",
           "pub(crate) static MESSAGES: &[Message] = &["]
    for name in keep:
        out.append(f'    Message {{ name: "{name}", fields: &[')
        for tag, rust_name, repeated, (kind, key, value, target) in sorted(messages[name]):
            if kind == "Map":
                value_kind = f'Kind::Message("{target}")' if value == "Message" else f"Kind::{value}"
                kind_text = f"Kind::Map(&Kind::{key}, &{value_kind})"
            elif kind == "Message":
                kind_text = f'Kind::Message("{target}")'
            else:
                kind_text = f"Kind::{kind}"
            out.append(f'        Field {{ tag: {tag}, name: "{rust_name}", repeated: {str(repeated).lower()}, kind: {kind_text} }},')
        out.append("    ] },")
    out.append("];")
    target = os.path.join(here, "..", "crates", "api", "src", "protobuf_schema.rs")
    open(target, "w").write("\n".join(out) + "\n")
    print(f"{len(keep)} messages written to {os.path.normpath(target)}")


if __name__ == "__main__":
    main()
