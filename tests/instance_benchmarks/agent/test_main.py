"""The agent runs on a bare instance: it may import the standard library, boto3 and its own package only."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
BLOCKED = ["torch", "numpy", "yaml", "typer", "rich", "pydantic", "aws_cdk", "constructs", "cdk_nag",
           "matplotlib", "pyarrow", "sagemaker", "moto", "sklearn", "gymnasium"]


def test_the_agent_needs_only_the_standard_library_and_boto3():
    code = (
        "import sys, importlib.abc\n"
        f"blocked = {BLOCKED!r}\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in blocked:\n"
        "            raise ImportError(f'the agent imported {name}')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import instance_benchmarks.agent.main, instance_benchmarks.campaigns.slices\n"
        "sys.argv = ['agent', '--help']\n"
        "import runpy; runpy.run_module('instance_benchmarks.agent', run_name='__main__')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "upload-log" in done.stdout
