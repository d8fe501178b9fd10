"""FiftyOne plugin shipped with antgo-mlflow: the 'antgo: import GT JSON' operator (--user-input)."""

import fiftyone.operators as foo
import fiftyone.operators.types as types


class ImportGT(foo.Operator):
    """Add the samples of a standard GT JSON file (a path on the server) to the current dataset."""

    @property
    def config(self):
        return foo.OperatorConfig(name="import_gt", label="antgo: import GT JSON", dynamic=False)

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.str("path", label="GT JSON file (path on the server)", required=True)
        return types.Property(inputs)

    def execute(self, ctx):
        from antgo_mlflow.review.fiftyone_io import add_gt_file

        added = add_gt_file(ctx.dataset, ctx.params["path"])
        ctx.trigger("reload_dataset")
        return {"added": added}

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.int("added", label="samples added")
        return types.Property(outputs)


def register(p):
    p.register(ImportGT)
