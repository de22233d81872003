"""ST-ABN: a video model that explains itself, and human knowledge through its temporal attention.

* :mod:`.model` — the network (slow-only 3D ResNet backbone, sizes ``tiny`` … ``r50``; attention
  branch with per-frame spatial and temporal attention; perception branch) and its
  :class:`~videoxai.models.base.VideoModel` adapter;
* :mod:`.losses` — ``L_per + L_att (+ γ_t · L_temp)``;
* :mod:`.train` — the training loop (checkpoints, resume, progress, validation of both branches);
* :mod:`.knowledge` — collect misclassified clips' temporal attention, edit files, fine-tune;
* :mod:`.editor` — the browser editor;
* :mod:`.evaluate` — accuracy and temporal agreement with ground-truth windows.

>>> import videoxai as vx
>>> model = vx.load_model("demo-stabn")            # tiny ST-ABN trained on the synthetic benchmark
>>> exp = vx.explain(model, clip, method="stabn")   # its own spatial and temporal attention
"""

from .model import BACKBONES, STABN, STABNConfig, STABNOutput, STABNVideoModel, build

__all__ = ["BACKBONES", "STABN", "STABNConfig", "STABNOutput", "STABNVideoModel", "build"]
