"""``recurrent_linear``: per-step linear maps whose weight gradient is one product over steps."""

import pytest
import torch
import torch.nn.functional as F

from fairseq_mmt_adv.modules.recurrent_linear import recurrent_linear


def unrolled(linear, hidden, inputs):
    """A toy recurrence h_t = tanh(linear(h_{t-1}) + x_t); returns the stacked states."""
    states = []
    for x in inputs.unbind(1):
        hidden = torch.tanh(linear(hidden) + x)
        states.append(hidden)
    return torch.stack(states, 1)


def make_leaves(dtype=torch.float64):
    torch.manual_seed(0)
    weight = torch.randn(5, 5, dtype=dtype, requires_grad=True)
    bias = torch.randn(5, dtype=dtype, requires_grad=True)
    hidden = torch.randn(3, 5, dtype=dtype, requires_grad=True)
    inputs = torch.randn(3, 7, 5, dtype=dtype, requires_grad=True)
    return weight, bias, hidden, inputs


@pytest.mark.parametrize("leaf_weight", [True, False])
def test_gradients_equal_those_of_f_linear(leaf_weight):
    weight, bias, hidden, inputs = make_leaves()
    probe = torch.randn(3, 7, 5, dtype=torch.float64)
    leaves = [weight, bias, hidden, inputs]

    def loss(linear_of):
        # a non-leaf weight (2 W, as the cGRU's concatenated query weight), also used outside
        # the steps, so both kinds of gradient meet in the weight's backward
        w = weight if leaf_weight else 2 * weight
        states = unrolled(linear_of(w, bias), hidden, inputs)
        return (states * probe).sum() + (w**2).sum() + bias.sum()

    ours = torch.autograd.grad(loss(recurrent_linear), leaves)
    reference = torch.autograd.grad(loss(lambda w, b: lambda x: F.linear(x, w, b)), leaves)
    for got, expected in zip(ours, reference, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_steps_that_do_not_reach_the_loss_add_nothing_and_backward_can_repeat():
    weight, bias, hidden, inputs = make_leaves()
    states = unrolled(recurrent_linear(weight, bias), hidden, inputs)
    loss = states[:, 3].sum()  # steps 5-7 do not reach it
    first = torch.autograd.grad(loss, [weight, bias], retain_graph=True)
    second = torch.autograd.grad(loss, [weight, bias])  # the store was emptied and refilled
    reference_states = unrolled(lambda x: F.linear(x, weight, bias), hidden, inputs)
    reference = torch.autograd.grad(reference_states[:, 3].sum(), [weight, bias])
    for a, b, expected in zip(first, second, reference, strict=True):
        torch.testing.assert_close(a, expected, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(b, expected, rtol=1e-12, atol=1e-12)


def graph_nodes(tensor):
    """Names of the autograd nodes that ``tensor`` depends on."""
    names, stack, seen = set(), [tensor.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return names


def test_outputs_are_those_of_f_linear_with_and_without_grad():
    weight, bias, hidden, inputs = make_leaves(torch.float32)
    expected = unrolled(lambda x: F.linear(x, weight, bias), hidden, inputs)
    states = unrolled(recurrent_linear(weight, bias), hidden, inputs)
    torch.testing.assert_close(states, expected)
    assert {"_StepLinearBackward", "_SharedParametersBackward"} <= graph_nodes(states)
    assert "AddmmBackward0" in graph_nodes(expected)
    assert "AddmmBackward0" not in graph_nodes(states)
    with torch.no_grad():
        linear = recurrent_linear(weight, bias)
        torch.testing.assert_close(unrolled(linear, hidden, inputs), expected)


def test_mixed_precision_step_gradients_keep_each_tensors_dtype():
    weight, bias, hidden, inputs = make_leaves(torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        states = unrolled(recurrent_linear(weight, bias), hidden, inputs)
    grads = torch.autograd.grad(states.float().sum(), [weight, bias, hidden])
    assert [g.dtype for g in grads] == [torch.float32] * 3
    reference = unrolled(lambda x: F.linear(x, weight, bias), hidden, inputs)
    expected = torch.autograd.grad(reference.sum(), [weight, bias, hidden])
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0.1, atol=0.1)
