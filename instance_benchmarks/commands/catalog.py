"""`trainfleet catalog ...`: the dated instance/price catalog (no AWS call)."""
from __future__ import annotations

import typer

from instance_benchmarks.catalog import load_catalog
from instance_benchmarks.commands import output

catalog_app = typer.Typer(no_args_is_help=True, help="The dated instance/price catalog.")


@catalog_app.command("list")
def catalog_list(region: str = typer.Option("us-east-1", help="Region for on-demand prices.")) -> None:
    """Instance types in the catalog with hardware and on-demand $/h."""
    catalog = load_catalog()
    catalog.require_region(region)
    rows = [{"name": s.name, "vcpus": s.vcpus, "memory": s.memory_gib, "gpu": f"{s.gpu_count}x {s.gpu_model}" if s.gpu_count else "-",
             "fp32": s.peak_fp32_tflops, "fp16": s.peak_fp16_tflops, "price": s.on_demand_usd_per_hour.get(region),
             "image": s.image or "refused"}
            for s in catalog.instances.values()]
    output.print_table(f"catalog as of {catalog.as_of} ({region})", rows, [
        ("name", "instance"), ("vcpus", "vCPU"), ("memory", "GiB"), ("gpu", "GPU"),
        ("fp32", "peak FP32 TFLOPS"), ("fp16", "peak FP16 TFLOPS"), ("price", "on-demand $/h"), ("image", "EC2 image")])
    refused = [s for s in catalog.instances.values() if s.refused]
    for spec in refused:
        output.console.print(f"  {spec.name}: {spec.refused}", markup=False, highlight=False)
