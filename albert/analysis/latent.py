"""The latent-space map: PCA to 2-D, k-means(++) clusters, nearest neighbours; numpy only.

Everything is deterministic for a given seed, so a report can be regenerated identically.
"""

import numpy as np

SILHOUETTE_SAMPLE = 1500  # silhouettes are O(n^2): scored on a fixed random sample beyond this


def standardize(vectors):
  """Zero mean, unit variance per dimension (constant dimensions stay 0): no width dominates distances."""
  vectors = np.asarray(vectors, np.float64)
  std = vectors.std(axis=0)
  return (vectors - vectors.mean(axis=0)) / np.where(std > 0, std, 1.0)


def pca(vectors, num_components=2):
  """Projections on the top principal components, [n, num_components]; signs fixed so the largest
  loading of each component is positive (the map does not flip between runs)."""
  centered = np.asarray(vectors, np.float64) - np.mean(vectors, axis=0)
  _, _, components = np.linalg.svd(centered, full_matrices=False)
  components = components[:num_components]
  signs = np.sign(components[np.arange(len(components)), np.argmax(np.abs(components), axis=1)])
  components = components * np.where(signs == 0, 1.0, signs)[:, None]
  projected = centered @ components.T
  if projected.shape[1] < num_components:  # fewer examples or dimensions than components
    projected = np.pad(projected, [(0, 0), (0, num_components - projected.shape[1])])
  return projected


def _squared_distances(points, centers):
  return np.maximum((points ** 2).sum(1)[:, None] - 2 * points @ centers.T + (centers ** 2).sum(1)[None], 0.0)


def _kmeans_plus_plus(points, k, rng):
  """k-means++ seeding: each new center drawn with probability proportional to squared distance."""
  centers = [points[rng.integers(len(points))]]
  for _ in range(1, k):
    nearest = _squared_distances(points, np.array(centers)).min(axis=1)
    total = nearest.sum()
    index = rng.choice(len(points), p=nearest / total) if total > 0 else rng.integers(len(points))
    centers.append(points[index])
  return np.array(centers)


def kmeans(vectors, k, seed=0, max_iterations=100, restarts=4):
  """(labels [n], centers [k, d]) of Lloyd's k-means with k-means++ seeding; best of `restarts` by
  inertia. Labels are renumbered by cluster size (0 = largest) so reports read naturally."""
  points = np.asarray(vectors, np.float64)
  k = max(1, min(k, len(points)))
  rng = np.random.default_rng(seed)
  best = None
  for _ in range(restarts):
    centers = _kmeans_plus_plus(points, k, rng)
    for _ in range(max_iterations):
      labels = _squared_distances(points, centers).argmin(axis=1)
      moved = np.array([points[labels == c].mean(axis=0) if np.any(labels == c) else centers[c]
                        for c in range(k)])
      if np.allclose(moved, centers):
        break
      centers = moved
    labels = _squared_distances(points, centers).argmin(axis=1)
    inertia = _squared_distances(points, centers)[np.arange(len(points)), labels].sum()
    if best is None or inertia < best[0]:
      best = (inertia, labels, centers)
  _, labels, centers = best
  order = np.argsort(-np.bincount(labels, minlength=k), kind="stable")
  renumber = np.empty(k, int)
  renumber[order] = np.arange(k)
  return renumber[labels], centers[order]


def silhouette(vectors, labels):
  """Mean silhouette coefficient (Euclidean); points alone in their cluster score 0."""
  points = np.asarray(vectors, np.float64)
  distances = np.sqrt(_squared_distances(points, points))
  clusters = np.unique(labels)
  if len(clusters) < 2:
    return 0.0
  mean_to = np.stack([distances[:, labels == c].mean(axis=1) for c in clusters], axis=1)
  sizes = np.array([np.sum(labels == c) for c in clusters])
  own = np.searchsorted(clusters, labels)
  own_size = sizes[own]
  a = mean_to[np.arange(len(points)), own] * own_size / np.maximum(own_size - 1, 1)
  mean_to[np.arange(len(points)), own] = np.inf
  b = mean_to.min(axis=1)
  scores = np.where(own_size > 1, (b - a) / np.maximum(np.maximum(a, b), 1e-12), 0.0)
  return float(scores.mean())


def choose_num_clusters(vectors, candidates, seed=0):
  """The k among `candidates` with the best silhouette (on a fixed sample for large n)."""
  points = np.asarray(vectors, np.float64)
  candidates = [k for k in candidates if 2 <= k < len(points)]
  if not candidates:
    return 1
  if len(points) > SILHOUETTE_SAMPLE:
    points = points[np.random.default_rng(seed).choice(len(points), SILHOUETTE_SAMPLE, replace=False)]
  scores = {k: silhouette(points, kmeans(points, k, seed)[0]) for k in candidates}
  return max(candidates, key=lambda k: (scores[k], -k))


def nearest_neighbors(vectors, index, count):
  """[(other index, cosine similarity)] of the `count` vectors most similar to vectors[index]."""
  points = np.asarray(vectors, np.float64)
  norms = np.linalg.norm(points, axis=1)
  similarity = points @ points[index] / np.maximum(norms * norms[index], 1e-12)
  similarity[index] = -np.inf
  order = np.argsort(-similarity, kind="stable")[:count]
  return [(int(i), float(similarity[i])) for i in order]
