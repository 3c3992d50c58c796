"""Workload of the ml benchmark image: import the scientific stack, fit a small regression and
print the rounded coefficients, then `ready`."""

import numpy
import pandas
import scipy.linalg
import sklearn.linear_model

rng = numpy.random.default_rng(20261205)
features = pandas.DataFrame(rng.normal(size=(500, 3)), columns=["a", "b", "c"])
weights = numpy.array([1.5, -2.0, 0.5])
target = features.to_numpy() @ weights + 0.001 * rng.normal(size=500)

model = sklearn.linear_model.LinearRegression().fit(features, target)
# The least-squares solution from scipy must agree with scikit-learn's fit.
solution, *_ = scipy.linalg.lstsq(numpy.c_[features.to_numpy(), numpy.ones(500)], target)
assert numpy.allclose(solution[:3], model.coef_, atol=1e-9), (solution, model.coef_)

print("result coef=" + " ".join(f"{c:.3f}" for c in model.coef_))
print("ready")
