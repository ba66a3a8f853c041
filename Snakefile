# selfsup: one study = one YAML file. Run the default study with
#   snakemake --cores all
# or a reference study with
#   snakemake --cores all --configfile studies/rotnet_mnist.yaml
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

min_version("9.0")

from selfsup.config import StudyError, coerce_command_line, load_schema, read_yaml

# Each study file read as the study check reads it: Snakemake's own error for a YAML
# syntax error has no line number, and its loader keeps the last of a key written twice.
for _study_file in workflow.overwrite_configfiles or ["config.yaml"]:
    if Path(_study_file).exists():
        try:
            read_yaml(_study_file)
        except StudyError as error:
            raise WorkflowError(str(error)) from None

# A study file given with --configfile replaces the default study instead of being
# merged into it, so keys of the default never leak into another study.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


# `--config seeds=[1]` gives strings inside lists and mappings: read them as the
# schema's numbers, so command-line overrides of lists work.
_schema = load_schema(Path(workflow.basedir) / "schemas" / "study.schema.yaml")
for _key in workflow.config_settings.config:
    config[_key] = coerce_command_line(
        config[_key], _schema["properties"].get(_key, {}), _schema
    )


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/pseudo_labels.smk"
include: "rules/pretext.smk"
include: "rules/downstream.smk"
include: "rules/semisupervised.smk"
include: "rules/report.smk"


# snakemake --report opens with the study's answers once accuracy_table has written them;
# before that, with a page that says how to get them.
ANSWERS = Path(rules.accuracy_table.output.answers).resolve()


report: str(ANSWERS) if ANSWERS.exists() else "report/workflow.rst"


rule all:
    default_target: True
    input:
        final_outputs(),
