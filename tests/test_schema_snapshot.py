"""The printed SDL is the public contract's shape: a refactoring of the GraphQL
layer must not change it. Regenerate the snapshot only for a deliberate change:
`.venv/bin/python -c "from schema.app_schema import build_schema;
print(build_schema(production=False).as_str())" > tests/snapshots/schema.graphql`
"""

from pathlib import Path

from schema.app_schema import build_schema

SNAPSHOT = Path(__file__).parent / "snapshots" / "schema.graphql"


def test_printed_schema_matches_the_committed_snapshot():
    printed = build_schema(production=False).as_str() + "\n"
    assert printed == SNAPSHOT.read_text()
