# frozen_string_literal: true

# The options-taking entry points and the assignment context, from Ruby:
# a human-in-the-loop round trip (a Ruby handler asks through its context,
# the orchestrator answers from a Ruby thread reading the run's events),
# per-server bearer tokens, refused options, and blazen_future_cancel.
#
# Loaded by test_blazen.rb, after BlazenCabiTest and its helpers are
# defined; it reopens that class, so setup/teardown and the shared embedded
# server apply here too.

require "socket"

class BlazenCabiTest
  # ---- helpers -----------------------------------------------------------

  # A worker made by worker_new_with_options_blocking whose handler is a
  # Ruby block getting (context, run_id, workflow_name, input_json); its
  # run future is started and the worker is awaited in `client`'s list.
  def start_context_worker(node_id, options, endpoint: EmbeddedServer.endpoint, client: @client, &block)
    handler = Lib::ContextHandler.new(&block)
    ptr = Lib.with_out do |out, err|
      Lib.blazen_controlplane_worker_new_with_options_blocking(
        endpoint, node_id, JSON.generate(options), handler.vtable, out, err
      )
    end
    refute ptr.null?, "worker_new_with_options gave a NULL worker"
    run = Lib::Future.new(Lib.blazen_controlplane_worker_run(ptr))
    worker = RunningWorker.new(node_id, ptr, run, handler, false)
    @workers << worker
    assert Lib.wait_until(TIMEOUT) { list_workers_of(client).any? { |w| w.node_id == node_id } },
           "worker #{node_id} is listed within #{TIMEOUT} s"
    worker
  end

  def list_workers_of(client)
    Lib.take_worker_list(Lib.with_out do |out, err|
      Lib.blazen_controlplane_client_list_workers_blocking(client, out, err)
    end)
  end

  def connect_with_options(endpoint, options_json)
    Lib.with_out do |out, err|
      Lib.blazen_controlplane_client_connect_with_options_blocking(endpoint, options_json, out, err)
    end
  end

  # Reads the events (as drained from `sink`, kept in `events`) until an
  # `input.request` of `run_id` arrives; returns its parsed data, or nil on
  # timeout.
  def next_input_request(sink, events, run_id)
    found = nil
    Lib.wait_until(TIMEOUT) do
      sink.drain_events(events)
      hit = events.find { |e| e[0] == run_id && e[1] == "input.request" }
      found = hit && JSON.parse(hit[2])
    end
    found
  end

  # ---- 1. human in the loop ---------------------------------------------------

  def test_human_in_the_loop_round_trip_through_the_assignment_context
    node = "ctx-worker-#{@suffix}"
    first_answer = JSON.generate({ "approved" => true, "by" => "ruby", "n" => 1 })
    second_answer = JSON.generate(["approved", 2])

    # Submitted before any worker can take it, and subscribed to while
    # PENDING, so the subscription sees the whole run.
    snap = submit("ask", '{"q":"ship it?"}', wait_for_worker: true)
    assert_equal RUN_STATUS_PENDING, snap.status
    run_id = snap.run_id
    sink = Lib::EventSink.new
    sub = subscribe_run(run_id, sink)

    # The orchestrator: a Ruby thread reading the run's events answers the
    # input request with respond_to_input_blocking.
    responder = Thread.new do
      events = []
      request = next_input_request(sink, events, run_id)
      if request
        Lib.with_error do |err|
          Lib.blazen_controlplane_client_respond_to_input_blocking(
            @client, run_id, request["request_id"], first_answer, err
          )
        end
      end
      [request, events]
    end
    responder.report_on_exception = false

    contexts = Queue.new
    options = {
      "capabilities" => [{ "kind" => "workflow:ask" }, { "kind" => "workflow:ask_briefly", "version" => 0 }],
      "tags" => { "team" => "ruby" },
      "labels" => { "suite" => "context" },
      "admission" => { "mode" => "Fixed", "max_in_flight" => 2 },
      "heartbeat_ms" => 500,
      "retry" => { "max_attempts" => 3, "initial_backoff_ms" => 50, "max_backoff_ms" => 200 }
    }
    raw_pass_back = true # the first run hands back the answer's own pointer
    worker = start_context_worker(node, options) do |ctx, rid, workflow, input|
      contexts << { run_id: rid, ctx_run_id: ctx.run_id, attempt: ctx.attempt,
                    cancelled: ctx.cancelled?, workflow: workflow, input: input }
      ctx.emit_event("progress", JSON.generate({ "step" => 1, "input" => JSON.parse(input) }))
      timeout_ms = workflow == "ask_briefly" ? 200 : 20_000
      raw = raw_pass_back
      raw_pass_back = false
      ctx.request_input("Approve?", '{"level":2}', timeout_ms, raw: raw)
    end

    info = list_workers.find { |w| w.node_id == node }
    assert_equal({ "team" => "ruby" }, JSON.parse(info.tags_json))
    assert_equal({ "mode" => "Fixed", "max_in_flight" => 2 }, JSON.parse(info.admission_json))
    assert_equal %w[workflow:ask workflow:ask_briefly],
                 JSON.parse(info.capabilities_json).map { |c| c["kind"] }.sort

    assert Lib.wait_until(TIMEOUT) { sink.closes >= 1 }, "the asked run's subscription closes"
    request, events = responder.value
    refute_nil request, "an input.request event reached the subscription"
    assert_equal "Approve?", request["prompt"]
    assert_equal({ "level" => 2 }, request["metadata"])
    refute_empty request["request_id"].to_s

    done = wait_status(run_id)
    assert_equal RUN_STATUS_COMPLETED, done.status, "the asked run completed: #{done.error}"
    assert_equal JSON.parse(first_answer), JSON.parse(done.output_json), "output == the answer"
    assert_equal node, done.assigned_to

    sink.drain_events(events)
    types = events.map { |e| e[1] }
    %w[status.running progress input.request status.completed].each do |t|
      assert_includes types, t
    end
    assert_equal %w[status.running progress input.request status.completed],
                 types.select { |t| %w[status.running progress input.request status.completed].include?(t) }
                      .uniq, "the events come in the order they happened"
    assert_equal "status.completed", types.last
    progress = JSON.parse(events.find { |e| e[1] == "progress" }[2])
    assert_equal({ "step" => 1, "input" => { "q" => "ship it?" } }, progress)
    assert(events.all? { |e| e[0] == run_id }, "every event is of the run")
    assert_equal 0, sink.errors

    seen = contexts.pop
    assert_equal run_id, seen[:run_id]
    assert_equal run_id, seen[:ctx_run_id], "the context names the run"
    refute seen[:cancelled], "the run is not cancelled while handled"
    assert_includes [0, 1], seen[:attempt], "a first dispatch (0- or 1-based)"

    free_subscription(sub)
    assert_equal 1, sink.drops, "the sink is dropped once"

    # A second run, answered through the future variant; this time the
    # handler returns a String (copied with blazen_string_alloc). The worker
    # is up, so the run starts at once: its events are caught by a
    # tag-filtered subscribe_all opened before the submission.
    sink2 = Lib::EventSink.new
    team = JSON.generate(["team=ruby"])
    sub2 = Lib.with_out do |out, err|
      Lib.blazen_controlplane_client_subscribe_all(@client, team, sink2.vtable, out, err)
    end
    @subscriptions << sub2
    run2 = submit("ask", '{"q":"again?"}', tags: team).run_id
    events2 = []
    request2 = next_input_request(sink2, events2, run2)
    refute_nil request2, "the second run asks too"
    refute_equal request["request_id"], request2["request_id"]
    fut = Lib::Future.new(Lib.blazen_controlplane_client_respond_to_input(
      @client, run2, request2["request_id"], second_answer
    ))
    assert fut.wait_fd(TIMEOUT), "respond_to_input future resolves"
    assert_equal 0, fut.take_unit
    fut.free
    done2 = wait_status(run2)
    assert_equal RUN_STATUS_COMPLETED, done2.status, done2.error
    assert_equal JSON.parse(second_answer), JSON.parse(done2.output_json)
    assert Lib.wait_until(TIMEOUT) {
      sink2.drain_events(events2).any? { |e| e[0] == run2 && e[1] == "status.completed" }
    }, "subscribe_all sees the second run complete"
    assert_equal JSON.parse(second_answer),
                 JSON.parse(events2.find { |e| e[0] == run2 && e[1] == "status.completed" }[2])["output"]
    free_subscription(sub2)
    assert Lib.wait_until(TIMEOUT) { sink2.drops >= 1 }, "drop_user_data follows the free"
    assert_equal 1, sink2.drops
    assert_equal 0, sink2.closes, "a freed subscribe_all gets no on_close"

    # Nobody answers: request_input times out and the run fails saying so.
    brief = wait_status(submit("ask_briefly", "{}").run_id)
    assert_equal RUN_STATUS_FAILED, brief.status
    assert_includes brief.error.to_s, "timed out"
    assert_nil brief.output_json

    assert_equal 3, worker.handler.handled
    later = [contexts.pop, contexts.pop]
    assert_equal [run2, "ask"], [later[0][:ctx_run_id], later[0][:workflow]]
    assert_equal "ask_briefly", later[1][:workflow]
    assert_equal later[1][:run_id], later[1][:ctx_run_id]
    assert_equal 0, worker.handler.drops, "not dropped while the worker runs"
    assert_equal :ok, stop_worker(worker)
    assert Lib.wait_until(TIMEOUT) { worker.handler.drops >= 1 }
    assert_equal 1, worker.handler.drops, "drop_user_data is called exactly once"
  end

  # ---- 2. bearer tokens ---------------------------------------------------------

  def test_per_server_bearer_token_guards_clients_and_workers
    assert_nil ENV["BLAZEN_PEER_TOKEN"], "the suite runs without BLAZEN_PEER_TOKEN"
    server = Lib.with_out do |out, err|
      Lib.blazen_controlplane_server_start_with_options_blocking(
        "127.0.0.1:0", '{"bearer_token":"s3cret"}', out, err
      )
    end
    endpoint = Lib.take_string(Lib.blazen_controlplane_server_endpoint(server))
    assert_match %r{\Ahttp://127\.0\.0\.1:\d+\z}, endpoint

    # Connecting needs no token; every call does.
    [nil, "{}", '{"bearer_token":"wrong"}', '{"bearer_token":"s3cret-but-longer"}'].each do |opts|
      client = connect_with_options(endpoint, opts)
      refute client.null?
      begin
        err = assert_raises(Lib::Error, "list_workers with options #{opts.inspect}") { list_workers_of(client) }
        assert_equal ERROR_KIND_PEER, err.kind, err.describe
        assert_equal "ControlPlaneUnauthenticated", err.subkind, "options #{opts.inspect}: #{err.describe}"
      ensure
        Lib.blazen_controlplane_client_free(client)
      end
    end
    # The plain connect has no token either.
    plain = Lib.with_out { |out, e| Lib.blazen_controlplane_client_connect_blocking(endpoint, out, e) }
    err = assert_raises(Lib::Error) { list_workers_of(plain) }
    assert_equal "ControlPlaneUnauthenticated", err.subkind
    Lib.blazen_controlplane_client_free(plain)

    good = connect_with_options(endpoint, '{"bearer_token":"s3cret","connect_timeout_ms":5000}')
    assert_equal [], list_workers_of(good), "the right token works"
    fut = Lib::Future.new(Lib.blazen_controlplane_client_connect_with_options(
      endpoint, '{"bearer_token":"s3cret"}'
    ))
    assert fut.wait_fd(TIMEOUT), "connect_with_options future resolves"
    by_future = fut.take(:client)
    fut.free
    assert_equal [], list_workers_of(by_future), "the right token works (future)"
    Lib.blazen_controlplane_client_free(by_future)

    # A worker with a wrong token and a single attempt gives up.
    intruder = Lib::ContextHandler.new { |_ctx, _r, _w, input| input }
    ptr = Lib.with_out do |out, e|
      Lib.blazen_controlplane_worker_new_with_options_blocking(
        endpoint, "intruder-#{@suffix}",
        '{"bearer_token":"wrong","retry":{"max_attempts":1},"capabilities":[{"kind":"workflow:z"}]}',
        intruder.vtable, out, e
      )
    end
    run = Lib::Future.new(Lib.blazen_controlplane_worker_run(ptr))
    assert run.wait_fd(TIMEOUT), "the wrong-token worker's run ends"
    err = assert_raises(Lib::Error) { run.take_unit }
    assert_equal "ControlPlaneUnauthenticated", err.subkind, err.describe
    run.free
    Lib.blazen_controlplane_worker_free(ptr)
    assert_equal 1, intruder.drops, "the refused worker's user_data is dropped once"
    assert_equal 0, intruder.handled
    assert_equal [], list_workers_of(good), "the intruder never registered"

    # With the right token a worker registers and serves a run submitted
    # through submit_workflow_with_options (by future).
    wf = "guarded-#{@suffix}"
    member = start_context_worker(
      "member-#{@suffix}",
      { "bearer_token" => "s3cret", "capabilities" => [{ "kind" => "workflow:#{wf}", "version" => 2 }] },
      endpoint: endpoint, client: good
    ) { |ctx, _run_id, _wf, input| JSON.generate({ "echo" => JSON.parse(input), "attempt" => ctx.attempt }) }
    fut = Lib::Future.new(Lib.blazen_controlplane_client_submit_workflow_with_options(
      good, wf, '{"x":1}', nil, false,
      '{"workflow_version":2,"idempotency_key":"k-1","deadline_ms":60000,' \
      '"resource_hint":{"vram_mb":512,"cpu_cores":1.5,"expected_seconds":3}}'
    ))
    assert fut.wait_fd(TIMEOUT), "submit_with_options future resolves"
    run_id = Lib.take_snapshot(fut.take(:snapshot)).run_id
    fut.free
    snap = nil
    assert Lib.wait_until(TIMEOUT) {
      snap = Lib.take_snapshot(Lib.with_out do |out, e|
        Lib.blazen_controlplane_client_describe_workflow_blocking(good, run_id, out, e)
      end)
      snap.status >= RUN_STATUS_COMPLETED
    }, "the guarded run ends"
    assert_equal RUN_STATUS_COMPLETED, snap.status, snap.error
    assert_equal({ "x" => 1 }, JSON.parse(snap.output_json)["echo"])
    assert_equal "member-#{@suffix}", snap.assigned_to

    # The token-less shared server is unaffected by this server's token.
    assert_kind_of Array, list_workers

    assert_equal :ok, stop_worker(member)
    assert Lib.wait_until(TIMEOUT) { member.handler.drops >= 1 }
    assert_equal 1, member.handler.drops
    Lib.blazen_controlplane_client_free(good)
  ensure
    Lib.blazen_controlplane_server_free(server) if server
  end

  # ---- 3. refused options ---------------------------------------------------------

  def test_bad_options_are_validation_errors_naming_options_json
    unreachable = "http://127.0.0.1:9"
    shared_bad = [
      '{"bearer_tokn":"x"}', "[1]", '"text"', "42", "{oops", '{"bearer_token":7}',
      '{"cert_path":"/a.pem"}', '{"cert_path":"/a.pem","key_path":"/k.pem"}'
    ]

    (shared_bad + ['{"connect_timeout_ms":"soon"}', '{"connect_timeout_ms":-1}']).each do |opts|
      assert_blazen_error(ERROR_KIND_VALIDATION, "options_json") do
        Lib.with_error do |e|
          Lib.blazen_controlplane_client_connect_with_options_blocking(unreachable, opts, ptr_slot, e)
        end
      end
      fut = Lib::Future.new(Lib.blazen_controlplane_client_connect_with_options(unreachable, opts))
      # (refused before any I/O, though the PEM-path pairing is checked
      # inside the operation rather than on the argument, so await it)
      assert fut.wait_fd(TIMEOUT), "a bad-options connect future resolves (#{opts})"
      assert_blazen_error(ERROR_KIND_VALIDATION, "options_json") { fut.take(:client) }
      fut.free
    end

    (shared_bad + ['{"connect_timeout_ms":5}']).each do |opts|
      out = ptr_slot
      assert_blazen_error(ERROR_KIND_VALIDATION, "options_json") do
        Lib.with_error do |e|
          Lib.blazen_controlplane_server_start_with_options_blocking("127.0.0.1:0", opts, out, e)
        end
      end
      assert out.read_pointer.null?, "no server on failure (#{opts})"
      fut = Lib::Future.new(Lib.blazen_controlplane_server_start_with_options("127.0.0.1:0", opts))
      assert fut.wait_fd(TIMEOUT)
      assert_blazen_error(ERROR_KIND_VALIDATION, "options_json") { fut.take(:server) }
      fut.free
    end
    # Named PEM files that do not exist: a TLS error, not a validation one.
    err = assert_raises(Lib::Error) do
      Lib.with_error do |e|
        Lib.blazen_controlplane_server_start_with_options_blocking(
          "127.0.0.1:0", '{"cert_path":"/no/c.pem","key_path":"/no/k.pem","ca_path":"/no/ca.pem"}',
          nil, e
        )
      end
    end
    assert_equal "ControlPlaneTls", err.subkind, err.describe

    [
      '{"priority":1}', '{"workflow_version":-1}', '{"workflow_version":"two"}',
      '{"deadline_ms":"later"}', '{"idempotency_key":5}', '{"resource_hint":{"gpus":1}}',
      '{"resource_hint":{"vram_mb":-5}}', '{"resource_hint":[]}', "[]", "{oops"
    ].each do |opts|
      snap = ptr_slot
      assert_blazen_error(ERROR_KIND_VALIDATION, "options_json") do
        Lib.with_error do |e|
          Lib.blazen_controlplane_client_submit_workflow_with_options_blocking(
            @client, "w-#{@suffix}", "{}", nil, true, opts, snap, e
          )
        end
      end
      assert snap.read_pointer.null?, "no snapshot on failure (#{opts})"
      fut = Lib::Future.new(Lib.blazen_controlplane_client_submit_workflow_with_options(
        @client, "w-#{@suffix}", "{}", nil, true, opts
      ))
      assert fut.wait_fd(TIMEOUT)
      assert_blazen_error(ERROR_KIND_VALIDATION, "options_json") { fut.take(:snapshot) }
      fut.free
    end
    # The other arguments are still checked (NULL client first).
    assert_blazen_error(ERROR_KIND_VALIDATION, "client") do
      Lib.with_error do |e|
        Lib.blazen_controlplane_client_submit_workflow_with_options_blocking(
          nil, "w", "{}", nil, true, '{"priority":1}', nil, e
        )
      end
    end
    assert_blazen_error(ERROR_KIND_VALIDATION, "input_json") do
      Lib.with_error do |e|
        Lib.blazen_controlplane_client_submit_workflow_with_options_blocking(
          @client, "w", "{", nil, true, nil, nil, e
        )
      end
    end

    # A refused worker still hands its user_data back exactly once.
    [
      '{"capabilitys":[]}', '{"capabilities":[{"kind":3}]}', '{"capabilities":[{"kind":"workflow:a","v":1}]}',
      '{"admission":{"mode":"Turbo"}}', '{"admission":{"mode":"Fixed"}}', '{"retry":{"max_attempts":-1}}',
      '{"retry":{"tries":2}}', '{"tags":{"a":1}}', '{"labels":[]}', '{"heartbeat_ms":"often"}',
      '{"cert_path":"/x.pem"}', "[]", "{oops"
    ].each do |opts|
      handler = Lib::ContextHandler.new { |_c, _r, _w, input| input }
      before = Lib.registered_count
      out = ptr_slot
      assert_blazen_error(ERROR_KIND_VALIDATION, "options_json") do
        Lib.with_error do |e|
          Lib.blazen_controlplane_worker_new_with_options_blocking(
            EmbeddedServer.endpoint, "bad-#{@suffix}", opts, handler.vtable, out, e
          )
        end
      end
      assert out.read_pointer.null?, "no worker on failure (#{opts})"
      assert_equal 1, handler.drops, "user_data dropped exactly once (#{opts})"
      assert_equal before, Lib.registered_count, "the registry entry is released (#{opts})"
      assert_equal 0, handler.handled
    end
    handler = Lib::ContextHandler.new { |_c, _r, _w, input| input }
    assert_blazen_error(ERROR_KIND_VALIDATION, "endpoint") do
      Lib.with_error do |e|
        Lib.blazen_controlplane_worker_new_with_options_blocking(nil, "n", nil, handler.vtable, ptr_slot, e)
      end
    end
    assert_equal 1, handler.drops, "dropped once when endpoint is refused"

    # respond_to_input checks its arguments; an unknown run is a PEER error.
    run_id = submit("nobody-#{@suffix}", "{}", wait_for_worker: true).run_id
    assert_blazen_error(ERROR_KIND_VALIDATION, "response_json") do
      Lib.with_error { |e| Lib.blazen_controlplane_client_respond_to_input_blocking(@client, run_id, "r", "{", e) }
    end
    assert_blazen_error(ERROR_KIND_VALIDATION, "request_id") do
      Lib.with_error { |e| Lib.blazen_controlplane_client_respond_to_input_blocking(@client, run_id, nil, "1", e) }
    end
    assert_blazen_error(ERROR_KIND_VALIDATION, "run_id") do
      Lib.with_error { |e| Lib.blazen_controlplane_client_respond_to_input_blocking(@client, "x", "r", "1", e) }
    end
    fut = Lib::Future.new(Lib.blazen_controlplane_client_respond_to_input(@client, run_id, "r", nil))
    assert fut.ready?
    assert_blazen_error(ERROR_KIND_VALIDATION, "response_json") { fut.take_unit }
    fut.free
    assert_blazen_error(ERROR_KIND_PEER) do
      Lib.with_error do |e|
        Lib.blazen_controlplane_client_respond_to_input_blocking(
          @client, "00000000-0000-4000-8000-000000000001", "r", "true", e
        )
      end
    end
    Lib.blazen_controlplane_client_cancel_workflow_blocking(@client, run_id, nil, nil)

    # The context functions refuse a NULL context.
    assert_nil Lib.take_string(Lib.blazen_assignment_context_run_id(nil))
    assert_equal 0, Lib.blazen_assignment_context_attempt(nil)
    refute Lib.blazen_assignment_context_is_cancelled(nil)
    assert_blazen_error(ERROR_KIND_VALIDATION, "ctx") do
      Lib.with_error { |e| Lib.blazen_assignment_context_emit_event(nil, "x", "{}", e) }
    end
    out = FFI::MemoryPointer.new(:pointer)
    out.write_pointer(FFI::Pointer.new(0x1))
    assert_blazen_error(ERROR_KIND_VALIDATION, "ctx") do
      Lib.with_error { |e| Lib.blazen_assignment_context_request_input_blocking(nil, "p", "{}", 1, out, e) }
    end
    assert_equal 0x1, out.read_pointer.address, "out_json is left alone on failure"
  end

  # ---- 4. blazen_future_cancel ------------------------------------------------------

  def assert_cancelled_take(fut, kind, what)
    assert_equal 1, Lib.blazen_future_poll(fut.ptr), "#{what}: poll is 1 after cancel"
    assert fut.wait_fd(TIMEOUT), "#{what}: the descriptor is readable after cancel"
    err = assert_raises(Lib::Error, what) { fut.take(kind) }
    assert_equal ERROR_KIND_CANCELLED, err.kind, "#{what}: #{err.describe}"
  end

  def test_future_cancel_on_pending_and_finished_futures
    Lib.blazen_future_cancel(nil) # ignored

    # Pending for sure: a call to a peer that accepts TCP connections and
    # never answers (the listen backlog takes them; nothing reads).
    silent = TCPServer.new("127.0.0.1", 0)
    mute = Lib::Future.new(Lib.blazen_controlplane_client_connect_with_options(
      "http://127.0.0.1:#{silent.addr[1]}", '{"connect_timeout_ms":20000}'
    ))
    mute_client = nil
    if mute.wait_fd(TIMEOUT)
      mute_client = mute.take(:client)
      fut = Lib::Future.new(Lib.blazen_controlplane_client_list_workers(mute_client))
      Lib.blazen_future_cancel(fut.ptr)
      assert_cancelled_take(fut, :worker_list, "list_workers on a silent peer")
      Lib.blazen_future_cancel(fut.ptr) # idempotent
      assert_equal 1, Lib.blazen_future_poll(fut.ptr)
      assert_equal 0, Lib.blazen_future_wait(fut.ptr), "wait returns at once"
      assert_blazen_error(ERROR_KIND_INTERNAL) { fut.take(:worker_list) } # taken already
      fut.free

      fut = Lib::Future.new(Lib.blazen_controlplane_client_submit_workflow_with_options(
        mute_client, "w", "{}", nil, true, '{"deadline_ms":1000}'
      ))
      Lib.blazen_future_cancel(fut.ptr)
      assert_cancelled_take(fut, :snapshot, "submit on a silent peer")
      fut.free
    else
      flunk "connect to a listening socket did not resolve"
    end
    mute.free

    # Finished before the cancel: the result is unchanged.
    fut = Lib::Future.new(Lib.blazen_controlplane_client_list_workers(@client))
    assert fut.wait_fd(TIMEOUT)
    Lib.blazen_future_cancel(fut.ptr)
    assert_equal 1, Lib.blazen_future_poll(fut.ptr)
    assert_kind_of Array, Lib.take_worker_list(fut.take(:worker_list)), "a finished future keeps its result"
    fut.free

    fut = Lib::Future.new(Lib.blazen_controlplane_client_describe_workflow(@client, "bad"))
    Lib.blazen_future_cancel(fut.ptr)
    assert_blazen_error(ERROR_KIND_VALIDATION, "run_id") { fut.take(:snapshot) } # already failed
    fut.free

    # Racing the work: either it finished first (success) or it is
    # CANCELLED; poll is 1 at once in both cases.
    outcomes = []
    [
      [:snapshot, -> { Lib.blazen_controlplane_client_submit_workflow(@client, "race-#{@suffix}", "{}", nil, true) }],
      [:client, -> { Lib.blazen_controlplane_client_connect_with_options(EmbeddedServer.endpoint, nil) }],
      [:server, -> { Lib.blazen_controlplane_server_start_with_options("127.0.0.1:0", "{}") }],
      [:unit, -> { Lib.blazen_controlplane_client_respond_to_input(@client, "00000000-0000-4000-8000-000000000002", "r", "1") }]
    ].each do |kind, start|
      fut = Lib::Future.new(start.call)
      Lib.blazen_future_cancel(fut.ptr)
      assert_equal 1, Lib.blazen_future_poll(fut.ptr), "#{kind}: poll is 1 after cancel"
      begin
        value = kind == :unit ? fut.take_unit : fut.take(kind)
        outcomes << :success
        case kind
        when :snapshot
          snap = Lib.take_snapshot(value)
          Lib.blazen_controlplane_client_cancel_workflow_blocking(@client, snap.run_id, nil, nil)
        when :client then Lib.blazen_controlplane_client_free(value)
        when :server then Lib.blazen_controlplane_server_free(value)
        end
      rescue Lib::Error => e
        # respond_to_input of an unknown run may fail on its own first.
        assert(e.kind == ERROR_KIND_CANCELLED || (kind == :unit && e.kind == ERROR_KIND_PEER),
               "#{kind}: success or CANCELLED, got #{e.describe}")
        outcomes << e.kind
      ensure
        fut.free
      end
    end
    assert_equal 4, outcomes.size
  ensure
    Lib.blazen_controlplane_client_free(mute_client) if mute_client
    silent&.close
  end
end
