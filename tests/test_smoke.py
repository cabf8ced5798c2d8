async def test_push_accept(running):
    res = await running.push({"id": "a1", "meter": "M-1", "value": "12345"})
    assert res[0]["status"] == "accepted", res
    res = await running.push({"id": "a1", "meter": "M-1", "value": "12345"})
    assert res[0]["duplicate"] is True
    running.clock.advance(days=1)
    res = await running.push({"id": "a2", "meter": "M-1", "value": "12300"})
    assert res[0]["status"] == "rejected", res
    print(res)
