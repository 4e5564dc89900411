"""The printed SDL is the public contract's shape: a refactoring of the GraphQL
layer must not change it. tests/snapshots/schema.graphql is the SDL as printed
before the schema was sliced per domain (accounts, models, orders, audit).

The comparison sorts definitions and fields first: merging the slices' Query
types lists `users` and `companies` after `me` rather than after `models`, and
the order of fields is not part of the contract; every name, argument, default,
type and description is. Regenerate the snapshot only for a
deliberate change:
`.venv/bin/python -c "from schema.app_schema import build_schema;
print(build_schema(production=False).as_str())" > tests/snapshots/schema.graphql`
"""

from pathlib import Path

from graphql import parse, print_ast

from schema.app_schema import build_schema

SNAPSHOT = Path(__file__).parent / "snapshots" / "schema.graphql"


def _sorted(sdl: str) -> str:
    """The SDL with definitions and their fields in name order; everything else
    (arguments, defaults, types, descriptions) as printed."""
    document = parse(sdl)
    for definition in document.definitions:
        if getattr(definition, "fields", None):
            ordered = tuple(sorted(definition.fields, key=lambda f: f.name.value))
            object.__setattr__(definition, "fields", ordered)  # AST nodes are frozen
    return "\n\n".join(sorted(print_ast(d) for d in document.definitions))


def test_printed_schema_matches_the_committed_snapshot():
    printed = build_schema(production=False).as_str()
    assert _sorted(printed) == _sorted(SNAPSHOT.read_text())


def test_the_comparison_notices_a_changed_default_or_description():
    original = _sorted(SNAPSHOT.read_text())
    changed = SNAPSHOT.read_text().replace("first: Int = 20", "first: Int = 21", 1)
    assert _sorted(changed) != original
    described = SNAPSHOT.read_text().replace("from where.", "from where?", 1)
    assert _sorted(described) != original
