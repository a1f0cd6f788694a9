"""The README stays true to the code: its operations table lists exactly what is served."""

from __future__ import annotations

import re
from pathlib import Path

from openecr.api.ecr.operations import OPERATIONS
from openecr.api.ecr.validation import service_model

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_operations_table_lists_every_served_operation() -> None:
    text = README.read_text()
    table = text.split("## Supported ECR operations", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`([A-Z][A-Za-z]+)`", table)) & set(service_model().operation_names)
    assert listed == set(OPERATIONS)
    count = f"{len(OPERATIONS)} of the {len(service_model().operation_names)} operations"
    assert count in text
