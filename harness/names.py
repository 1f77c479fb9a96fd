"""Program names as Velociraptor deploys them."""

from __future__ import annotations

from typing import List


def velociraptor_names(count: int, app: str = "node_example") -> List[str]:
    """*count* names of the form app-version-config-hash-proc-port, ports from 5000."""
    return [f"{app}-v{1 + i % 3}-local-f96054b7-web-{5000 + i}" for i in range(count)]
