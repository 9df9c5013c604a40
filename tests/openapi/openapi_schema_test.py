#!/usr/bin/python3
"""Validates src/api/openapi.json as an OpenAPI 3.0 document.

Structure: Debian's python3-jsonschema against openapi-3.0.schema.json (the 3.0.3 specification's
objects and their fields, written for this test; Debian 12 has no OpenAPI validator package).
Beyond what a JSON Schema can say: every $ref resolves, every {param} of a path template is a
declared path parameter (and the reverse), operationIds are unique. Each check is also run on a
broken copy of the document, which it must reject.

Usage: openapi_schema_test.py SOURCE_DIR
"""

from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path
from typing import Any

import jsonschema

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def resolve(doc: dict[str, Any], ref: str) -> Any:
    if not ref.startswith("#/"):
        raise KeyError(f"only local references are used here, not {ref!r}")
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        out = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        for v in node.values():
            out += refs(v)
        return out
    if isinstance(node, list):
        return [r for v in node for r in refs(v)]
    return []


def problems(doc: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """Everything wrong with `doc`, one line each; empty when it is valid."""
    out: list[str] = []
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.FormatChecker())
    for e in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in e.absolute_path) or "(root)"
        out.append(f"schema: {where}: {e.message[:200]}")
    if out:
        return out  # the checks below assume the structure
    for r in refs(doc):
        try:
            resolve(doc, r)
        except (KeyError, TypeError):
            out.append(f"$ref {r!r} does not resolve")
    seen: dict[str, str] = {}
    for templ, item in doc["paths"].items():
        wanted = set(re.findall(r"\{([^}]+)\}", templ))
        common = item.get("parameters", [])
        for method in METHODS:
            if method not in item:
                continue
            op = item[method]
            params = [resolve(doc, p["$ref"]) if "$ref" in p else p
                      for p in common + op.get("parameters", [])]
            declared = {p["name"] for p in params if p["in"] == "path"}
            if declared != wanted:
                out.append(f"{method} {templ}: path parameters {sorted(declared)} != {sorted(wanted)}")
            op_id = op.get("operationId")
            if op_id in seen:
                out.append(f"{method} {templ}: operationId {op_id!r} also used by {seen[op_id]}")
            elif op_id:
                seen[op_id] = f"{method} {templ}"
    return out


def main() -> int:
    src = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    doc = json.loads((src / "src/api/openapi.json").read_text())
    schema = json.loads((src / "tests/openapi/openapi-3.0.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)

    found = problems(doc, schema)
    for p in found:
        print(f"FAIL: src/api/openapi.json: {p}")

    # Each check must catch what it is for: broken copies are rejected.
    def broken(edit: Any) -> dict[str, Any]:
        d = copy.deepcopy(doc)
        edit(d)
        return d

    mutants = {
        "a response without a description":
            lambda d: d["paths"]["/v1/cluster"]["get"]["responses"]["200"].pop("description"),
        "a parameter in 'body' (OpenAPI 2)":
            lambda d: d["paths"]["/v1/tasks"]["get"]["parameters"][0].update({"in": "body"}),
        "a misspelt field": lambda d: d["paths"]["/v1/workers"]["get"].update({"respones": {}}),
        "an OpenAPI 3.1 version": lambda d: d.update({"openapi": "3.1.0"}),
        "a dangling $ref": lambda d: d["components"]["schemas"]["TaskPage"]["properties"]["tasks"]
            ["items"].update({"$ref": "#/components/schemas/Nope"}),
        "an undeclared path parameter": lambda d: d["paths"].update(
            {"/v1/tasks/{id}/attempts": {"get": {"responses": {"200": {"description": "x"}}}}}),
        "a duplicate operationId":
            lambda d: d["paths"]["/livez"]["get"].update({"operationId": "readyz"}),
        "a status code that is not one": lambda d: d["paths"]["/livez"]["get"]["responses"].update(
            {"600": {"description": "x"}}),
    }
    for name, edit in mutants.items():
        if not problems(broken(edit), schema):
            print(f"FAIL: the checks accept a document with {name}")
            found.append(name)
    if found:
        return 1
    ops = sum(1 for item in doc["paths"].values() for m in METHODS if m in item)
    print(f"PASS: OpenAPI {doc['openapi']}, {len(doc['paths'])} paths, {ops} operations; "
          f"{len(mutants)} broken copies rejected")
    return 0


if __name__ == "__main__":
    sys.exit(main())
