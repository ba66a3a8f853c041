# selfsup: one study = one YAML file. Run the default study with
#   snakemake --cores all
# or a reference study with
#   snakemake --cores all --configfile studies/rotnet_mnist.yaml
from snakemake.utils import min_version

min_version("9.0")


# A study file given with --configfile replaces the default study instead of being
# merged into it, so keys of the default never leak into another study.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/pseudo_labels.smk"
include: "rules/pretext.smk"
include: "rules/downstream.smk"
include: "rules/semisupervised.smk"
include: "rules/report.smk"


rule all:
    default_target: True
    input:
        final_outputs(),
