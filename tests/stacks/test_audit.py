"""checkov and bandit acknowledgements (`.ci/audit` runs the tools): each names one check and gives a reason,
and the README's table lists every checkov skip."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _skips(templates) -> dict[tuple[str, str], str]:
    found = {}
    for template in templates.values():
        for logical_id, resource in template.to_json()["Resources"].items():
            for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
                found[(skip["id"], resource["Type"])] = skip["comment"]
    return found


def test_every_checkov_skip_has_a_reason_and_a_readme_row(templates):
    skips = _skips(templates)
    assert {check for check, _ in skips} == {"CKV_AWS_18", "CKV_AWS_111", "CKV_AWS_115", "CKV_AWS_116",
                                             "CKV_AWS_117", "CKV_AWS_158"}
    assert all(len(reason) > 40 for reason in skips.values()), skips
    readme = (ROOT / "README.md").read_text()
    rows = set(re.findall(r"^\| `(CKV_AWS_\d+)` \| `(AWS::[A-Za-z0-9:]+)` \|", readme, re.MULTILINE))
    assert rows == set(skips)


def test_every_nosec_names_its_check_and_a_reason():
    for folder in ("instance_benchmarks", "stacks", "training_scripts"):
        for path in (ROOT / folder).rglob("*.py"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if "# nosec" in line:
                    assert re.search(r"# nosec B\d{3}  # \S.{15,}", line), f"{path}:{number}: {line.strip()}"
