"""The SN72 wire protocol: `ImageSynapse`, field for field the subnet's (natix/protocol.py).

The class name is part of the wire format: a dendrite posts to `/<class name>`, and the axon
routes on it. The official StreetVision validator (bittensor 9.12.2) has sent plain `ImageSynapse`
since late 2025; `ExtendedImageSynapse` (the same fields plus `model_url` and `explanation`) is an
older variant that some validators may still send. The miner attaches both routes, and answers
`ImageSynapse` first.

| field | type | default | who fills it |
| --- | --- | --- | --- |
| `image` | str | "" | validator: base64 JPEG |
| `prediction` | float | -1.0 | miner: P(roadwork) in [0, 1]; -1 means no answer |
| `testnet_label` | int | -1 | testnet validators: the true label (never used to predict; a traced miner tags its wrong answers with it) |
| `model_url` | str | "" | miner (Extended only): where the model card lives |
| `explanation` | str | "" | miner (Extended only): visual evidence, asked for when prediction > 0.5 |
"""

import bittensor as bt
import pydantic


class ImageSynapse(bt.Synapse):
    """One image challenge: base64 `image` in, `prediction` out."""

    testnet_label: int = -1
    image: str = pydantic.Field(title="Image", description="A base64 encoded image", default="", frozen=False)
    prediction: float = pydantic.Field(
        title="Prediction", description="Probability that the image shows roadwork", default=-1.0, frozen=False
    )

    def deserialize(self) -> float:
        return self.prediction


class ExtendedImageSynapse(ImageSynapse):
    """ImageSynapse plus the miner's model URL and explanation: an older validators' variant (the
    official validator sends plain ImageSynapse since late 2025); still answered."""

    model_url: str = ""
    explanation: str = pydantic.Field(
        title="Explanation", description="Visual indicators behind the prediction", default="", frozen=False
    )


SYNAPSE_TYPES: tuple[type[ImageSynapse], ...] = (ImageSynapse, ExtendedImageSynapse)
