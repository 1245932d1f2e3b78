"""Validates ocync configs against a JSON Schema with the `jsonschema` package (Draft 2020-12),
the check editors and CI pipelines run. Called by tests/it/schema.rs.

    config_schema.py SCHEMA.json < documents.json

stdin is a JSON object {name: yaml_text}; stdout is a JSON object {name: [error, ...]} where an
empty list means the document is valid. Each error is "path: message". The schema itself is
checked against the 2020-12 meta-schema first (exit 1 if it is not a valid schema).
"""

import json
import sys

import jsonschema
import yaml


def deepest(error):
    """For an anyOf/oneOf failure (every optional key is "T or null"), the branch error that
    says what is wrong, as editors show it, instead of "is not valid under any of the given
    schemas"."""
    while error.context:
        # The value is not null, so "is not of type 'null'" says nothing: drop that branch.
        branches = [e for e in error.context if e.schema != {"type": "null"}] or error.context
        error = jsonschema.exceptions.best_match(branches)
    return error


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        schema = json.load(f)
    validator_class = jsonschema.validators.validator_for(schema)
    if validator_class is not jsonschema.Draft202012Validator:
        print(f"schema is not Draft 2020-12 but {validator_class.__name__}", file=sys.stderr)
        return 1
    try:
        validator_class.check_schema(schema)
    except jsonschema.SchemaError as error:
        print(f"not a valid 2020-12 schema: {error.message}", file=sys.stderr)
        return 1
    validator = validator_class(schema)
    results = {}
    for name, text in json.load(sys.stdin).items():
        document = yaml.safe_load(text)
        errors = sorted(map(deepest, validator.iter_errors(document)), key=lambda e: list(map(str, e.absolute_path)))
        results[name] = [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]
    json.dump(results, sys.stdout, indent=1, sort_keys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
