"""`@roadwork/review/export_hardest`: the App's button for `roadwork review RUN --export DIR`.

Runs on the current view (a saved view such as `mistakes`, or any filter), writes the `top` hardest
samples as an export folder (training/review_labels.py) and returns the path of its labels.csv.
"""

import fiftyone.operators as foo
import fiftyone.operators.types as types

FORMATS = ("csv", "coco", "yolo", "cvat")


class ExportHardest(foo.Operator):
    @property
    def config(self):
        return foo.OperatorConfig(
            name="export_hardest", label="roadwork: export the hardest samples for labelling", dynamic=False
        )

    def resolve_input(self, ctx):
        inputs = types.Object()
        inputs.int("top", default=100, required=True, label="How many", description="The N hardest of the view")
        inputs.enum(
            "format",
            list(FORMATS),
            default="csv",
            required=True,
            label="Format",
            description="labels.csv is always written; cvat/coco/yolo add box pre-annotations",
        )
        inputs.str("out_dir", required=True, label="Folder to write", description="e.g. runs/relabel")
        return types.Property(inputs, view=types.View(label="Export the hardest samples"))

    def execute(self, ctx):
        from training.review_labels import export_hardest  # the project is installed in .venv-review

        path = export_hardest(ctx.view, ctx.params["out_dir"], int(ctx.params["top"]), ctx.params["format"])
        return {"labels_csv": str(path)}

    def resolve_output(self, ctx):
        outputs = types.Object()
        outputs.str("labels_csv", label="Fix `label` here, then run `roadwork review RUN --import` on its folder")
        return types.Property(outputs)


def register(p):
    p.register(ExportHardest)
