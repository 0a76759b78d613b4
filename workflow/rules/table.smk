localrules:
    table_model,
    table_dataset,


rule table_model:
    input:
        seg=expand(paths.SEG_METRICS, seed=GRID["seeds"], allow_missing=True),
        recon=expand(paths.RECON_METRICS, seed=GRID["seeds"], allow_missing=True),
        fvd=expand(paths.FVD_METRICS, seed=GRID["seeds"], kind=["recon", "comp"], allow_missing=True),
        code=code("table"),
    output:
        table=paths.MODEL_TABLE,
    params:
        seeds=GRID["seeds"],
    log:
        paths.ROOT + "logs/table/{dataset}_{model}.log",
    shell:
        "{PYTHON} -m slotbench table --dataset {wildcards.dataset} --model {wildcards.model} 2>&1 | log_to {log}"


rule table_dataset:
    input:
        tables=expand(paths.MODEL_TABLE, model=GRID["models"], allow_missing=True),
        code=code("table"),
    output:
        table=paths.DATASET_TABLE,
    params:
        models=GRID["models"],
    log:
        paths.ROOT + "logs/table/{dataset}.log",
    shell:
        "{PYTHON} -m slotbench table --dataset {wildcards.dataset} 2>&1 | log_to {log}"
