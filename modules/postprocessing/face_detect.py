"""RetinaFace (ResNet-50) face detector that reads facexlib's `detection_Resnet50_Final.pth`.

This is the detector A1111's GFPGAN / CodeFormer restorers use (through facexlib). The module
layout mirrors that file's state dict key names exactly (`body.*` is torchvision's ResNet-50 up
to layer4, then `fpn.*`, `ssh1..3.*`, `ClassHead.N.conv1x1`, `BboxHead.N.conv1x1`,
`LandmarkHead.N.conv1x1`), so the file loads without renaming. The file is a pickle: it is read
with the project's safe loader, so a file that asks to run code is refused.

Detection follows facexlib as A1111 calls it: the image is resized so its shorter side is 640,
fed as BGR float minus the mean (104, 117, 123), anchors are decoded with variances 0.1 / 0.2,
faces scoring over 0.97 are kept, overlaps removed by NMS at IoU 0.4, and faces whose eyes are
closer than 5 pixels are dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torch import nn
from torch.nn import functional as F
from torchvision.models._utils import IntermediateLayerGetter

from modules.models.errors import InvalidModelFile
from modules.models.safe_load import load_state_dict

DETECTOR_FILENAME = "detection_Resnet50_Final.pth"
MIN_SIZES = ((16, 32), (64, 128), (256, 512))  # anchor sides per pyramid level
STEPS = (8, 16, 32)  # pyramid level strides
VARIANCES = (0.1, 0.2)
BGR_MEAN = (104.0, 117.0, 123.0)
CHANNELS = 256


@dataclass(frozen=True)
class FaceBox:
    """A detected face: its box in image pixels, and (from RetinaFace) score and 5 landmarks.

    Landmarks are (x, y) for: left eye, right eye, nose, left mouth corner, right mouth corner.
    """

    left: int
    top: int
    right: int
    bottom: int
    score: float = 1.0
    landmarks: tuple[tuple[float, float], ...] | None = None


def _conv_bn(cin: int, cout: int, kernel: int, relu: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, 1, kernel // 2, bias=False), nn.BatchNorm2d(cout)]
    if relu:  # facexlib's LeakyReLU has slope 0 at 256 channels, i.e. a plain ReLU (no weights)
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class _FPN(nn.Module):
    def __init__(self, in_channels: tuple[int, int, int], out: int) -> None:
        super().__init__()
        self.output1 = _conv_bn(in_channels[0], out, 1, True)
        self.output2 = _conv_bn(in_channels[1], out, 1, True)
        self.output3 = _conv_bn(in_channels[2], out, 1, True)
        self.merge1 = _conv_bn(out, out, 3, True)
        self.merge2 = _conv_bn(out, out, 3, True)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        o1, o2, o3 = self.output1(feats[0]), self.output2(feats[1]), self.output3(feats[2])
        o2 = self.merge2(o2 + F.interpolate(o3, size=o2.shape[2:], mode="nearest"))
        o1 = self.merge1(o1 + F.interpolate(o2, size=o1.shape[2:], mode="nearest"))
        return [o1, o2, o3]


class _SSH(nn.Module):
    """Context module: 3x3, 5x5 (two 3x3) and 7x7 (three 3x3) branches, concatenated."""

    def __init__(self, cin: int, out: int) -> None:
        super().__init__()
        self.conv3X3 = _conv_bn(cin, out // 2, 3, False)
        self.conv5X5_1 = _conv_bn(cin, out // 4, 3, True)
        self.conv5X5_2 = _conv_bn(out // 4, out // 4, 3, False)
        self.conv7X7_2 = _conv_bn(out // 4, out // 4, 3, True)
        self.conv7x7_3 = _conv_bn(out // 4, out // 4, 3, False)  # lower-case x as in the weights file

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c5_1 = self.conv5X5_1(x)
        c7_2 = self.conv7X7_2(c5_1)
        return F.relu(torch.cat([self.conv3X3(x), self.conv5X5_2(c5_1), self.conv7x7_3(c7_2)], dim=1))


class _Head(nn.Module):
    """1x1 conv giving `per_anchor` numbers for each of the 2 anchors at every position."""

    def __init__(self, cin: int, per_anchor: int, anchors: int = 2) -> None:
        super().__init__()
        self.per_anchor = per_anchor
        self.conv1x1 = nn.Conv2d(cin, anchors * per_anchor, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (B, A*k, H, W) -> (B, H*W*A, k): rows, then columns, then anchors, as the prior grid
        return self.conv1x1(x).permute(0, 2, 3, 1).reshape(x.shape[0], -1, self.per_anchor)


class RetinaFaceNet(nn.Module):
    """The network: returns (box deltas, class logits, landmark deltas) for every anchor."""

    def __init__(self) -> None:
        super().__init__()
        backbone = torchvision.models.resnet50(weights=None)
        self.body = IntermediateLayerGetter(backbone, {"layer2": "1", "layer3": "2", "layer4": "3"})
        self.fpn = _FPN((CHANNELS * 2, CHANNELS * 4, CHANNELS * 8), CHANNELS)
        self.ssh1, self.ssh2, self.ssh3 = _SSH(CHANNELS, CHANNELS), _SSH(CHANNELS, CHANNELS), _SSH(CHANNELS, CHANNELS)
        self.ClassHead = nn.ModuleList(_Head(CHANNELS, 2) for _ in range(3))
        self.BboxHead = nn.ModuleList(_Head(CHANNELS, 4) for _ in range(3))
        self.LandmarkHead = nn.ModuleList(_Head(CHANNELS, 10) for _ in range(3))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pyramid = self.fpn(list(self.body(x).values()))
        feats = [ssh(f) for ssh, f in zip((self.ssh1, self.ssh2, self.ssh3), pyramid, strict=True)]
        boxes = torch.cat([h(f) for h, f in zip(self.BboxHead, feats, strict=True)], dim=1)
        logits = torch.cat([h(f) for h, f in zip(self.ClassHead, feats, strict=True)], dim=1)
        marks = torch.cat([h(f) for h, f in zip(self.LandmarkHead, feats, strict=True)], dim=1)
        return boxes, logits, marks


def prior_boxes(height: int, width: int) -> torch.Tensor:
    """Anchors (cx, cy, w, h), as fractions of the image size, in the heads' output order."""
    rows = []
    for sizes, step in zip(MIN_SIZES, STEPS, strict=True):
        fh, fw = math.ceil(height / step), math.ceil(width / step)
        cy, cx = torch.meshgrid(
            (torch.arange(fh, dtype=torch.float32) + 0.5) * step / height,
            (torch.arange(fw, dtype=torch.float32) + 0.5) * step / width,
            indexing="ij",
        )
        per_size = [
            torch.stack([cx, cy, torch.full_like(cx, s / width), torch.full_like(cy, s / height)], dim=-1)
            for s in sizes
        ]
        rows.append(torch.stack(per_size, dim=2).reshape(-1, 4))  # (row, col, anchor) order
    return torch.cat(rows)


def decode_boxes(deltas: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """Box deltas -> (x1, y1, x2, y2) as fractions of the image size."""
    centre = priors[:, :2] + deltas[:, :2] * VARIANCES[0] * priors[:, 2:]
    size = priors[:, 2:] * torch.exp(deltas[:, 2:] * VARIANCES[1])
    return torch.cat([centre - size / 2, centre + size / 2], dim=1)


def decode_landmarks(deltas: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """Landmark deltas -> (N, 5, 2) points as fractions of the image size."""
    offsets = deltas.reshape(-1, 5, 2) * VARIANCES[0] * priors[:, None, 2:]
    return priors[:, None, :2] + offsets


class RetinaFaceDetector:
    """Finds faces with their 5 landmarks, as facexlib's FaceRestoreHelper does for A1111."""

    def __init__(
        self,
        net: RetinaFaceNet,
        device: torch.device | None = None,
        detect_size: int | None = 640,
        threshold: float = 0.97,
        nms_iou: float = 0.4,
        min_eye_distance: float = 5.0,
    ) -> None:
        self.device = device or torch.device("cpu")
        self.net = net.to(self.device).eval()
        self.detect_size, self.threshold = detect_size, threshold
        self.nms_iou, self.min_eye_distance = nms_iou, min_eye_distance

    def detect(self, image: Image.Image) -> list[FaceBox]:
        """Faces in `image`, most confident first, in the image's pixel coordinates."""
        image = image.convert("RGB")
        scale = min(image.size) / self.detect_size if self.detect_size else 1.0
        if scale != 1.0:
            size = (max(1, int(image.width / scale)), max(1, int(image.height / scale)))
            image = image.resize(size, Image.Resampling.LANCZOS)
        bgr = torch.from_numpy(np.asarray(image, dtype=np.float32)[:, :, ::-1].copy())
        x = (bgr - torch.tensor(BGR_MEAN)).permute(2, 0, 1).unsqueeze(0).to(self.device)
        with torch.inference_mode():
            deltas, logits, marks = (t[0].float().cpu() for t in self.net(x))
        priors = prior_boxes(image.height, image.width)
        scores = logits.softmax(dim=-1)[:, 1]
        keep = scores > self.threshold
        wh = torch.tensor([image.width, image.height], dtype=torch.float32)
        boxes = decode_boxes(deltas[keep], priors[keep]) * wh.repeat(2) * scale
        points = decode_landmarks(marks[keep], priors[keep]) * wh * scale
        scores = scores[keep]
        order = torchvision.ops.nms(boxes, scores, self.nms_iou)  # sorted by score, highest first
        return [self._face(boxes[i], scores[i], points[i]) for i in order.tolist() if self._eyes_apart(points[i])]

    def _eyes_apart(self, points: torch.Tensor) -> bool:
        return float(torch.linalg.vector_norm(points[0] - points[1])) >= self.min_eye_distance

    @staticmethod
    def _face(box: torch.Tensor, score: torch.Tensor, points: torch.Tensor) -> FaceBox:
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        marks = tuple((float(p[0]), float(p[1])) for p in points)
        return FaceBox(x1, y1, x2, y2, float(score), marks)


def _strip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # The released file was saved from a DataParallel model: every key starts with "module."
    return {k.removeprefix("module."): v for k, v in state.items()}


def build_retinaface(state: dict[str, torch.Tensor]) -> RetinaFaceNet:
    """A RetinaFaceNet holding `state`; InvalidModelFile when the keys or shapes do not fit."""
    net = RetinaFaceNet()
    state = _strip_prefix(state)
    expected = net.state_dict()
    # BatchNorm's num_batches_tracked is bookkeeping only; older files may lack it.
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k, v in state.items() if k in expected and v.shape != expected[k].shape]
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong))
            if keys
        )
        raise InvalidModelFile(f"not a RetinaFace ResNet-50 detector ({detail})")
    net.load_state_dict(state, strict=False)
    return net.float().eval()


def load_retinaface(
    path: Path, device: torch.device | None = None, *, safe: bool = True, detect_size: int | None = 640
) -> RetinaFaceDetector:
    """Load facexlib's detection_Resnet50_Final.pth (safely: code in the pickle is refused)."""
    state = load_state_dict(path, safe=safe)
    try:
        net = build_retinaface(state)
    except InvalidModelFile as e:
        raise InvalidModelFile(f"{Path(path).name}: {e}") from None
    return RetinaFaceDetector(net, device, detect_size=detect_size)


def find_detector(folders: list[Path]) -> Path | None:
    """The first detection_Resnet50_Final.pth in `folders` (A1111 keeps it in models/GFPGAN)."""
    for folder in folders:
        candidate = folder / DETECTOR_FILENAME
        if candidate.is_file():
            return candidate
    return None
