"""Snakemake entry: one split of one export (spinebench.exports.{hf,vlmevalkit,spinebench_json}), which the
export's own rule links into the export folder."""

from spinebench.exports.common import load_job_inputs
from spinebench.io import run_job


def main(snakemake):
    inputs = load_job_inputs(snakemake.input)
    split, folder = snakemake.wildcards.split, snakemake.output[0]
    if snakemake.wildcards.format == "hf":
        from spinebench.exports.hf import export_hf_part

        export_hf_part(inputs, split, folder, rows_per_file=snakemake.params.rows_per_file)
    elif snakemake.wildcards.format == "vlmevalkit":
        from spinebench.exports.vlmevalkit import export_vlmevalkit_part

        export_vlmevalkit_part(inputs, split, folder)
    else:
        from spinebench.exports.spinebench_json import export_spinebench_json_part

        export_spinebench_json_part(inputs, split, folder)


run_job(main, snakemake)  # noqa: F821
