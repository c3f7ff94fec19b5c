"""Grad-CAM cost vs a forward pass, per image at 224 px (target: <= 1.2x a forward).

    python tests/bench/bench_explain.py [--arch resnet18] [--n 10]

Prints the median time of a plain forward, of our Grad-CAM (frozen parameters, graph cut
at the target layer: backward only through the head) and of pytorch-grad-cam's GradCAM
used naively (gradients through the whole network), for one model of the ensemble, and of
the multi-scale map the review shows by default (``explain.DEFAULT_SCALES``).
"""

from __future__ import annotations

import argparse
import statistics
import time


def _median_time(fn, n):
    fn()  # warm-up
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    import torch
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from mskstudio.ml.classify.classifier import default_cam_layer, make_classifier
    from mskstudio.ml.explain.gradcam import DEFAULT_SCALES, cam_for_models, module_at

    ap = argparse.ArgumentParser()
    ap.add_argument("--arch", default="resnet18")
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--size", type=int, default=224)
    args = ap.parse_args()
    torch.manual_seed(0)
    model = make_classifier(args.arch, 4).eval()
    for q in model.parameters():
        q.requires_grad_(False)
    x = torch.rand(1, 1, args.size, args.size)

    def forward():
        with torch.no_grad():
            model(x)

    t_fwd = _median_time(forward, args.n)
    t_cam = _median_time(lambda: cam_for_models([model], x, 0, arch=args.arch), args.n)

    naive = make_classifier(args.arch, 4).eval()
    cam = GradCAM(model=naive, target_layers=[module_at(naive, default_cam_layer(args.arch))])
    t_naive = _median_time(lambda: cam(input_tensor=x, targets=[ClassifierOutputTarget(0)]), args.n)
    print(f"{args.arch} @ {args.size}px, 1 image, {torch.get_num_threads()} threads, median of {args.n}")
    print(f"  forward                 {t_fwd * 1000:8.1f} ms")
    print(f"  Grad-CAM (ours)         {t_cam * 1000:8.1f} ms  = {t_cam / t_fwd:.2f}x forward")
    print(f"  Grad-CAM (naive)        {t_naive * 1000:8.1f} ms  = {t_naive / t_fwd:.2f}x forward")

    # the review's default map: the mean of the CAMs at each input scale
    inputs = [torch.rand(1, 1, round(args.size * s), round(args.size * s)) for s in DEFAULT_SCALES]
    t_multi = _median_time(lambda: [cam_for_models([model], xs, 0, arch=args.arch) for xs in inputs], args.n)
    scales = "+".join(f"{s:g}x" for s in DEFAULT_SCALES)
    print(f"  multi-scale ({scales}) {t_multi * 1000:8.1f} ms  = {t_multi / t_fwd:.2f}x forward "
          f"(pixels: {sum(s * s for s in DEFAULT_SCALES):.2f}x)")


if __name__ == "__main__":
    main()
