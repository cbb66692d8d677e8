"""The charts stay readable with many runs: labels never overlap each other."""
import random

from instance_benchmarks.campaigns.report_charts import place_labels


def test_labels_of_many_clustered_points_never_overlap():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = random.Random(0)
    points = [(rng.gauss(10, 2), rng.gauss(0.01, 0.002)) for _ in range(30)]  # 30 configurations, one cluster
    fig, ax = plt.subplots(figsize=(8.5, 5.5))
    fig.subplots_adjust(left=0.1, right=0.95, bottom=0.1, top=0.95)
    ax.scatter(*zip(*points))
    ax.margins(0.12)
    ax.autoscale_view()
    placed = place_labels(ax, [(x, y, f"{i + 1} c5.xlarge batch_size={i}") for i, (x, y) in enumerate(points)])
    renderer = fig.canvas.get_renderer()
    boxes = [text.get_window_extent(renderer) for text in ax.texts]
    assert placed == len(boxes) >= 5
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), (a, b)
    plt.close(fig)
