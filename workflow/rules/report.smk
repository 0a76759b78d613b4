rule report:
    input:
        table=paths.DATASET_TABLE,
        export=paths.EXPORT_RECEIPT,
        checkpoints=expand(paths.CHECKPOINT, model=GRID["models"], seed=GRID["seeds"], allow_missing=True),
        summaries=expand(paths.TRAIN_SUMMARY, model=GRID["models"], seed=GRID["seeds"], allow_missing=True),
        comp_frames=expand(paths.COMP_GEN_RECORD, model=GRID["models"], seed=GRID["seeds"], allow_missing=True),
        code=code("report"),
    output:
        report=paths.REPORT,
        train_curves=expand(paths.CURVES_TRAIN, model=GRID["models"], seed=GRID["seeds"], allow_missing=True),
        val_curves=expand(paths.CURVES_VAL, model=GRID["models"], seed=GRID["seeds"], allow_missing=True),
    params:
        models=GRID["models"],
        seeds=GRID["seeds"],
    resources:
        **job_resources("report"),
    log:
        paths.ROOT + "logs/report/{dataset}.log",
    shell:
        "{PYTHON} -m slotbench report --dataset {wildcards.dataset} 2>&1 | log_to {log}"
