rule export:
    input:
        code=code("export"),
    output:
        meta=paths.DATA_META,
    params:
        dataset=export_params,
    resources:
        **job_resources("export"),
    log:
        "logs/export/{dataset}.log",
    shell:
        "{PYTHON} -m slotbench export --dataset {wildcards.dataset} 2>&1 | log_to {log}"
