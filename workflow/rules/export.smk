# Output: the receipt that the export command writes once data/{dataset}/ is published (a copy of
# its meta.json), not data/{dataset}/ itself. Snakemake deletes a job's output before the job and
# after a failure; the export command replaces data/{dataset}/ only once the new export is complete
# (slotbench.data.publish), so a failed re-export leaves the previous one in place, and a missing
# receipt re-runs the export.
rule export:
    input:
        code=code("export"),
    output:
        receipt=paths.EXPORT_RECEIPT,
    params:
        dataset=export_params,
    resources:
        **job_resources("export"),
    log:
        paths.ROOT + "logs/export/{dataset}.log",
    shell:
        "{PYTHON} -m slotbench export --dataset {wildcards.dataset} 2>&1 | log_to {log}"
