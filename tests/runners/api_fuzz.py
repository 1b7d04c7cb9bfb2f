"""Run by tests/runners/test_api_fuzz.py in a process of its own: schemathesis patches
hypothesis when imported (its printer, its buffers), which must not reach the other tests
of a pytest process.

    python -m tests.runners.api_fuzz BASE_URL TOKEN SCHEMA_PATH

Generates requests for every operation of the schema (25 each) and exits 1 on the first
answer that is a server error, printing the request.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(base: str, token: str, schema_path: Path) -> int:
    """Call every operation with generated requests; return 0 if none answered 5xx."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_path(schema_path)
    operations = [result.ok() for result in schema.get_all_operations()]
    if len(operations) < 10:
        print(f"only {len(operations)} operations in {schema_path}")
        return 1
    for operation in operations:

        @settings(max_examples=25, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(case=operation.as_strategy())
        def check(case: schemathesis.Case) -> None:
            response = case.call(base_url=base, headers={"Authorization": f"Bearer {token}"})
            assert response.status_code < 500, (case.method, case.formatted_path, case.query,
                                                response.text[:500])  # fmt: skip

        check()
    print(f"{len(operations)} operations, no server error")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], Path(sys.argv[3])))
