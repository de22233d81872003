"""ST-ABN: a video model that explains itself, and human knowledge through its temporal attention.

* :mod:`.network` — the network (attention branch with per-frame spatial and temporal attention;
  perception branch) on :mod:`.backbone`, a slow-only 3D ResNet (sizes ``tiny`` … ``r50``),
  configured by :mod:`.config`;
* :mod:`.model` — its :class:`~videoxai.models.base.VideoModel` adapter and ``build``;
* :mod:`.losses` — ``L_per + L_att (+ γ_t · L_temp)``;
* :mod:`.train` — training from a dataset spec (with a warm start) on :mod:`.loop`, the training
  loop (progress, validation of both branches), :mod:`~videoxai.stabn.recipe`, its settings, and
  :mod:`.run_directory`, the output directory (checkpoints, resume, history);
* :mod:`.knowledge` — collect misclassified clips' temporal attention, edit files, fine-tune;
* :mod:`.editor` — the browser editor;
* :mod:`.evaluate` — accuracy and temporal agreement with ground-truth windows.

>>> import videoxai as vx
>>> model = vx.load_model("demo-stabn")            # tiny ST-ABN trained on the synthetic benchmark
>>> exp = vx.explain(model, clip, method="stabn")   # its own spatial and temporal attention
"""

from .backbone import BACKBONES
from .config import STABNConfig
from .model import STABNVideoModel, build
from .network import STABN, STABNOutput

__all__ = ["BACKBONES", "STABN", "STABNConfig", "STABNOutput", "STABNVideoModel", "build"]
