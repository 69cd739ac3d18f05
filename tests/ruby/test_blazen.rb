# frozen_string_literal: true

# A Ruby consumer of the Blazen C ABI, through the ffi gem, against a real
# control plane embedded in this process: client calls (blocking and
# futures), validation errors, workers whose handler is a Ruby block,
# per-run and tag-filtered subscriptions, and user_data ownership; the
# options-taking calls and the assignment context are in
# test_context_options.rb, loaded at the end.
#
#   ruby tests/ruby/test_blazen.rb        (BLAZEN_CABI_LIB=path/to/.so)

require "minitest/autorun"
require "io/wait"
require "json"
require "securerandom"
require_relative "blazen_ffi"

# The embedded control plane shared by every test, started once and stopped
# after the last test.
module EmbeddedServer
  class << self
    attr_reader :server, :endpoint, :port

    def start
      return if @server

      @server = BlazenFFI.with_out do |out, err|
        BlazenFFI.blazen_controlplane_server_start_blocking("127.0.0.1:0", out, err)
      end
      @endpoint = BlazenFFI.take_string(BlazenFFI.blazen_controlplane_server_endpoint(@server))
      @port = BlazenFFI.blazen_controlplane_server_port(@server)
    end

    def stop
      return unless @server

      BlazenFFI.blazen_controlplane_server_shutdown(@server)
      BlazenFFI.blazen_controlplane_server_shutdown(@server) # idempotent
      BlazenFFI.blazen_controlplane_server_free(@server)
      @server = nil
    end
  end
end

# Servers follow BLAZEN_PEER_TOKEN unless given a token of their own; the
# suite's servers and clients run without one.
ENV.delete("BLAZEN_PEER_TOKEN")
EmbeddedServer.start
Minitest.after_run { EmbeddedServer.stop }

class BlazenCabiTest < Minitest::Test
  include BlazenFFI # for the ERROR_KIND_* and RUN_STATUS_* constants

  TIMEOUT = 20 # seconds, for anything that waits on the control plane
  Lib = BlazenFFI

  # A running worker and the handles to tear it down.
  RunningWorker = Struct.new(:node_id, :ptr, :run_future, :handler, :stopped)

  def setup
    @client = Lib.with_out do |out, err|
      Lib.blazen_controlplane_client_connect_blocking(EmbeddedServer.endpoint, out, err)
    end
    refute @client.null?, "connect gave a NULL client"
    @workers = []
    @subscriptions = []
    @suffix = SecureRandom.hex(4)
  end

  def teardown
    @subscriptions.each { |s| Lib.blazen_controlplane_subscription_free(s) }
    @workers.each { |w| stop_worker(w) unless w.stopped }
    Lib.blazen_controlplane_client_free(@client)
    errors = []
    errors << Lib::CALLBACK_ERRORS.pop until Lib::CALLBACK_ERRORS.empty?
    assert_empty errors, "exceptions were raised inside callbacks"
  end

  # ---- helpers ---------------------------------------------------------------

  def ptr_slot
    FFI::MemoryPointer.new(:pointer).tap { |p| p.write_pointer(nil) }
  end

  # Runs the block, which must raise BlazenFFI::Error; checks its kind and
  # that the message names `param`.
  def assert_blazen_error(kind, param = nil, &block)
    err = assert_raises(Lib::Error, &block)
    assert_equal kind, err.kind, "error kind (#{err.describe})"
    assert_includes err.message, param, "the message names #{param}" if param
    err
  end

  def submit(workflow, input, tags: nil, wait_for_worker: false)
    snap = Lib.with_out do |out, err|
      Lib.blazen_controlplane_client_submit_workflow_blocking(
        @client, workflow, input, tags, wait_for_worker, out, err
      )
    end
    Lib.take_snapshot(snap)
  end

  def describe_run(run_id)
    Lib.take_snapshot(Lib.with_out do |out, err|
      Lib.blazen_controlplane_client_describe_workflow_blocking(@client, run_id, out, err)
    end)
  end

  # Describes the run until it reaches `status` or a terminal status.
  def wait_status(run_id, status = nil)
    snap = nil
    Lib.wait_until(TIMEOUT) do
      snap = describe_run(run_id)
      status ? snap.status == status || snap.status >= RUN_STATUS_COMPLETED : snap.status >= RUN_STATUS_COMPLETED
    end
    snap
  end

  def list_workers
    Lib.take_worker_list(Lib.with_out do |out, err|
      Lib.blazen_controlplane_client_list_workers_blocking(@client, out, err)
    end)
  end

  def wait_listed(node_id)
    Lib.wait_until(TIMEOUT) { list_workers.find { |w| w.node_id == node_id } }
  end

  def caps(*workflows)
    JSON.generate(workflows.map { |w| { "kind" => "workflow:#{w}", "version" => 0 } })
  end

  # Creates a worker with a Ruby handler block, runs it through the
  # non-blocking `blazen_controlplane_worker_run` future and waits until the
  # control plane lists it.
  def start_worker(node_id, workflows, tags: {}, max_in_flight: 4, &block)
    handler = Lib::Handler.new(&block)
    ptr = Lib.with_out do |out, err|
      Lib.blazen_controlplane_worker_new_blocking(
        EmbeddedServer.endpoint, node_id, caps(*workflows), JSON.generate(tags),
        ADMISSION_FIXED, max_in_flight, handler.vtable, out, err
      )
    end
    run = Lib::Future.new(Lib.blazen_controlplane_worker_run(ptr))
    worker = RunningWorker.new(node_id, ptr, run, handler, false)
    @workers << worker
    assert wait_listed(node_id), "worker #{node_id} is listed within #{TIMEOUT} s"
    worker
  end

  # Shuts the worker down, awaits its run future (by its descriptor) and
  # frees both. Returns the run's outcome: :ok or the BlazenFFI::Error.
  def stop_worker(worker)
    worker.stopped = true
    Lib.blazen_controlplane_worker_shutdown(worker.ptr)
    ready = worker.run_future.wait_fd(TIMEOUT)
    outcome = if ready
                begin
                  worker.run_future.take_unit
                  :ok
                rescue Lib::Error => e
                  e
                end
              else
                :timeout
              end
    worker.run_future.free
    Lib.blazen_controlplane_worker_free(worker.ptr)
    outcome
  end

  def subscribe_run(run_id, sink)
    sub = Lib.with_out do |out, err|
      Lib.blazen_controlplane_client_subscribe_run_events(@client, run_id, sink.vtable, out, err)
    end
    @subscriptions << sub
    sub
  end

  def free_subscription(sub)
    @subscriptions.delete(sub)
    Lib.blazen_controlplane_subscription_free(sub)
  end

  # ---- tests -----------------------------------------------------------------

  def test_version_strings_and_errors_built_from_json
    version = Lib.take_string(Lib.blazen_version)
    assert_match(/\A\d+\.\d+\.\d+/, version)
    assert_equal 0, Lib.blazen_init
    assert_equal 0, Lib.blazen_init

    assert_equal "héllo", Lib.take_string(Lib.blazen_string_alloc("héllo"))
    assert Lib.blazen_string_alloc(nil).null?, "string_alloc(NULL) is NULL"

    err = Lib.take_error(Lib.blazen_error_from_json(
      '{"kind":"RateLimit","message":"slow down","retry_after_ms":250}'
    ))
    assert_equal 2, err.kind
    assert_equal "slow down", err.message

    err = Lib.take_error(Lib.blazen_error_from_json('{"kind":"Workflow","message":"ruby says no"}'))
    assert_equal ERROR_KIND_WORKFLOW, err.kind
    assert_equal "ruby says no", err.message
    assert_nil err.subkind

    err = Lib.take_error(Lib.blazen_error_from_json("{not json"))
    assert_equal ERROR_KIND_INTERNAL, err.kind
    assert_nil Lib.take_error(Lib.blazen_error_from_json(nil))
  end

  def test_connect_blocking_and_by_future_then_list_workers
    assert_match %r{\Ahttp://127\.0\.0\.1:\d+\z}, EmbeddedServer.endpoint
    assert_operator EmbeddedServer.port, :>, 0
    assert_equal EmbeddedServer.port, Integer(EmbeddedServer.endpoint.split(":").last)

    # A server of its own (started through the future API) that no worker
    # has ever joined: workers of other tests stay listed on the shared one
    # (see the report), so "no workers" is checked here.
    fut = Lib::Future.new(Lib.blazen_controlplane_server_start("127.0.0.1:0"))
    assert fut.wait_poll(TIMEOUT), "server start future resolves (poll)"
    server = fut.take(:server)
    fut.free
    endpoint = Lib.take_string(Lib.blazen_controlplane_server_endpoint(server))
    refute_equal EmbeddedServer.endpoint, endpoint

    blocking = Lib.with_out do |out, err|
      Lib.blazen_controlplane_client_connect_blocking(endpoint, out, err)
    end
    refute blocking.null?

    fut = Lib::Future.new(Lib.blazen_controlplane_client_connect(endpoint))
    assert fut.wait_poll(TIMEOUT), "connect future resolves (poll)"
    by_future = fut.take(:client)
    refute by_future.null?
    # a second take is an INTERNAL error
    assert_blazen_error(ERROR_KIND_INTERNAL) { fut.take(:client) }
    fut.free

    listed = Lib.take_worker_list(Lib.with_out do |out, err|
      Lib.blazen_controlplane_client_list_workers_blocking(blocking, out, err)
    end)
    assert_equal [], listed, "no workers (blocking)"

    fut = Lib::Future.new(Lib.blazen_controlplane_client_list_workers(by_future))
    fut.wait # blazen_future_wait, without the GVL
    assert fut.ready?
    assert_equal [], Lib.take_worker_list(fut.take(:worker_list)), "no workers (future)"
    fut.free

    Lib.blazen_controlplane_client_free(by_future)
    Lib.blazen_controlplane_client_free(blocking)
    Lib.blazen_controlplane_server_shutdown(server)
    assert_blazen_error(ERROR_KIND_PEER) do
      Lib.with_error do |err|
        Lib.blazen_controlplane_client_connect_blocking(endpoint, ptr_slot, err)
      end
    end
  ensure
    Lib.blazen_controlplane_server_free(server) if server
  end

  def test_validation_errors_name_the_parameter
    snap = ptr_slot
    call = lambda do |&blk|
      Lib.with_error { |err| blk.call(err) }
    end

    assert_blazen_error(ERROR_KIND_VALIDATION, "endpoint") do
      call.call { |e| Lib.blazen_controlplane_client_connect_blocking(nil, nil, e) }
    end
    assert_blazen_error(ERROR_KIND_VALIDATION, "client") do
      call.call { |e| Lib.blazen_controlplane_client_submit_workflow_blocking(nil, "w", "{}", nil, true, snap, e) }
    end
    assert_blazen_error(ERROR_KIND_VALIDATION, "workflow_name") do
      call.call { |e| Lib.blazen_controlplane_client_submit_workflow_blocking(@client, nil, "{}", nil, true, snap, e) }
    end
    assert_blazen_error(ERROR_KIND_VALIDATION, "input_json") do
      call.call { |e| Lib.blazen_controlplane_client_submit_workflow_blocking(@client, "w", "{oops", nil, true, snap, e) }
    end
    assert_blazen_error(ERROR_KIND_VALIDATION, "input_json") do
      call.call { |e| Lib.blazen_controlplane_client_submit_workflow_blocking(@client, "w", nil, nil, true, snap, e) }
    end
    assert_blazen_error(ERROR_KIND_VALIDATION, "required_tags_json") do
      call.call { |e| Lib.blazen_controlplane_client_submit_workflow_blocking(@client, "w", "{}", '{"a":1}', true, snap, e) }
    end
    assert_blazen_error(ERROR_KIND_VALIDATION, "run_id") do
      call.call { |e| Lib.blazen_controlplane_client_describe_workflow_blocking(@client, "not-a-uuid", snap, e) }
    end
    assert_blazen_error(ERROR_KIND_VALIDATION, "run_id") do
      call.call { |e| Lib.blazen_controlplane_client_describe_workflow_blocking(@client, nil, snap, e) }
    end
    assert_blazen_error(ERROR_KIND_VALIDATION, "run_id") do
      call.call { |e| Lib.blazen_controlplane_client_cancel_workflow_blocking(@client, "1234", snap, e) }
    end
    assert_blazen_error(ERROR_KIND_VALIDATION, "client") do
      call.call { |e| Lib.blazen_controlplane_client_list_workers_blocking(nil, nil, e) }
    end
    assert_blazen_error(ERROR_KIND_VALIDATION, "bind_addr") do
      call.call { |e| Lib.blazen_controlplane_server_start_blocking("not an address", nil, e) }
    end
    assert snap.read_pointer.null?, "no snapshot is written on failure"

    # The future variants: an already-failed future that says why.
    fut = Lib::Future.new(Lib.blazen_controlplane_client_describe_workflow(@client, "zzz"))
    assert fut.ready?, "a bad-input future is ready at once"
    assert_blazen_error(ERROR_KIND_VALIDATION, "run_id") { fut.take(:snapshot) }
    fut.free
    fut = Lib::Future.new(Lib.blazen_controlplane_client_connect(nil))
    assert_blazen_error(ERROR_KIND_VALIDATION, "endpoint") { fut.take(:client) }
    fut.free
  end

  def test_failed_worker_new_drops_user_data_once
    [
      [caps("echo"), "{}", 7, "admission_mode"],
      ['[{"kind":3}]', "{}", ADMISSION_FIXED, "capabilities_json"],
      [caps("echo"), '{"a":1}', ADMISSION_FIXED, "tags_json"]
    ].each do |capabilities, tags, mode, param|
      handler = Lib::Handler.new { |_, _, input| input }
      before = Lib.registered_count
      out = ptr_slot
      assert_blazen_error(ERROR_KIND_VALIDATION, param) do
        Lib.with_error do |err|
          Lib.blazen_controlplane_worker_new_blocking(
            EmbeddedServer.endpoint, "never-#{@suffix}", capabilities, tags, mode, 1,
            handler.vtable, out, err
          )
        end
      end
      assert out.read_pointer.null?, "no worker on failure (#{param})"
      assert_equal 1, handler.drops, "user_data dropped exactly once (#{param})"
      assert_equal before, Lib.registered_count, "the registry entry is released (#{param})"
      assert_equal 0, handler.handled
    end

    # A subscription refused before it opens releases its sink too.
    sink = Lib::EventSink.new
    assert_blazen_error(ERROR_KIND_VALIDATION, "run_id") do
      Lib.with_error do |err|
        Lib.blazen_controlplane_client_subscribe_run_events(@client, "bad", sink.vtable, ptr_slot, err)
      end
    end
    assert_blazen_error(ERROR_KIND_VALIDATION, "required_tags_json") do
      Lib.with_error do |err|
        Lib.blazen_controlplane_client_subscribe_all(@client, "[3]", sink.vtable, ptr_slot, err)
      end
    end
    assert_equal 2, sink.drops, "the sink is dropped once per refused call"
  end

  def test_submit_without_worker_is_refused_and_pending_run_cancels
    err = assert_blazen_error(ERROR_KIND_PEER) { submit("nobody-#{@suffix}", "{}") }
    assert_equal "ControlPlaneFailedPrecondition", err.subkind

    snap = submit("nobody-#{@suffix}", '{"n":1}', tags: '["zone=nowhere"]', wait_for_worker: true)
    assert_equal RUN_STATUS_PENDING, snap.status
    assert_match(/\A\h{8}-\h{4}-\h{4}-\h{4}-\h{12}\z/, snap.run_id)
    assert_nil snap.output_json
    assert_nil snap.assigned_to
    assert_nil snap.completed_at_ms

    err = assert_raises(Lib::Error) { describe_run("00000000-0000-4000-8000-000000000000") }
    assert_equal "ControlPlaneNotFound", err.subkind

    fut = Lib::Future.new(Lib.blazen_controlplane_client_cancel_workflow(@client, snap.run_id))
    fut.wait
    cancelled = Lib.take_snapshot(fut.take(:snapshot))
    fut.free
    assert_equal snap.run_id, cancelled.run_id
    assert_equal RUN_STATUS_CANCELLED, cancelled.status
    assert_equal RUN_STATUS_CANCELLED, describe_run(snap.run_id).status
  end

  def test_futures_awaited_through_io_wait_readable
    fut = Lib::Future.new(Lib.blazen_controlplane_client_submit_workflow(
      @client, "nobody-#{@suffix}", "[1,2]", "null", true
    ))
    fd = fut.fd
    assert_operator fd, :>=, 0
    assert_equal fd, fut.fd, "the descriptor is made once"
    io = IO.for_fd(fd, autoclose: false)
    refute_nil io.wait_readable(TIMEOUT), "the descriptor becomes readable"
    assert fut.ready?
    snap = Lib.take_snapshot(fut.take(:snapshot))
    fut.free
    assert_equal RUN_STATUS_PENDING, snap.status

    # describe, awaited the same way
    fut = Lib::Future.new(Lib.blazen_controlplane_client_describe_workflow(@client, snap.run_id))
    assert fut.wait_fd(TIMEOUT), "describe future readable"
    assert_equal snap.run_id, Lib.take_snapshot(fut.take(:snapshot)).run_id
    # a take of the wrong type is INTERNAL
    assert_blazen_error(ERROR_KIND_INTERNAL) { fut.take(:worker_list) }
    fut.free

    # an already-failed future's descriptor is readable at once
    fut = Lib::Future.new(Lib.blazen_controlplane_client_submit_workflow(@client, "w", "{", nil, false))
    assert fut.wait_fd(TIMEOUT)
    assert_blazen_error(ERROR_KIND_VALIDATION, "input_json") { fut.take(:snapshot) }
    fut.free

    Lib.blazen_controlplane_client_cancel_workflow_blocking(@client, snap.run_id, nil, nil)
  end

  def test_ruby_worker_completes_echo_runs_and_fails_the_failing_one
    echo = "echo-#{@suffix}"
    fail_wf = "fail-#{@suffix}"
    node = "ruby-worker-#{@suffix}"
    worker = start_worker(node, [echo, fail_wf], tags: { "lang" => "ruby" }) do |_run_id, workflow, input|
      raise Lib::HandlerFailure.new("Workflow", "ruby says no") if workflow == fail_wf

      input # echo: the input JSON string, copied with blazen_string_alloc
    end

    info = list_workers.find { |w| w.node_id == node }
    assert_equal({ "lang" => "ruby" }, JSON.parse(info.tags_json))
    assert_equal [echo, fail_wf].map { |w| "workflow:#{w}" }.sort,
                 JSON.parse(info.capabilities_json).map { |c| c["kind"] }.sort
    assert_equal({ "mode" => "Fixed", "max_in_flight" => 4 }, JSON.parse(info.admission_json))
    assert_operator info.connected_at_ms, :>, 1_600_000_000_000
    assert_equal 0, worker.handler.drops, "user_data is not dropped while the worker runs"

    inputs = [
      '{"i":0}', '{"i":1,"s":"two"}', "[1,2,3]", '"text"', "42", '{"nested":{"a":[true,null]}}'
    ]
    ids = inputs.map { |input| submit(echo, input).run_id }
    ids.zip(inputs).each do |run_id, input|
      snap = wait_status(run_id)
      assert_equal RUN_STATUS_COMPLETED, snap.status, "run #{run_id} (#{input}) completed: #{snap.error}"
      assert_equal JSON.parse(input), JSON.parse(snap.output_json), "output == input"
      assert_equal node, snap.assigned_to
      refute_nil snap.completed_at_ms
    end

    failed = wait_status(submit(fail_wf, "{}").run_id)
    assert_equal RUN_STATUS_FAILED, failed.status
    assert_includes failed.error, "ruby says no"
    assert_nil failed.output_json
    assert_equal inputs.size + 1, worker.handler.handled

    # A second run of the same worker is refused.
    assert_blazen_error(ERROR_KIND_VALIDATION, "worker") do
      Lib.with_error { |err| Lib.blazen_controlplane_worker_run_blocking(worker.ptr, err) }
    end

    assert_equal :ok, stop_worker(worker), "run resolves with 0 after shutdown"
    assert Lib.wait_until(TIMEOUT) { worker.handler.drops >= 1 }
    assert_equal 1, worker.handler.drops, "drop_user_data is called exactly once"
  end

  def test_run_subscription_sees_running_then_completed_and_closes
    late = "late-#{@suffix}"
    run_id = submit(late, '{"late":true}', wait_for_worker: true).run_id
    sink = Lib::EventSink.new
    sub = subscribe_run(run_id, sink)
    assert_equal 0, sink.drops

    worker = start_worker("late-worker-#{@suffix}", [late]) { |_, _, input| input }
    assert Lib.wait_until(TIMEOUT) { sink.closes >= 1 }, "the per-run subscription closes"
    events = sink.drain_events
    types = events.map { |e| e[1] }
    assert_includes types, "status.running"
    assert_equal "status.completed", types.last
    assert_operator types.index("status.running"), :<, types.index("status.completed")
    assert(events.all? { |e| e[0] == run_id }, "every event is of the run")
    assert_equal({ "late" => true }, JSON.parse(events.last[2])["output"])
    assert(events.all? { |e| e[3] > 1_600_000_000_000 }, "timestamps are epoch ms")
    assert_equal 1, sink.closes
    assert_equal 0, sink.errors

    free_subscription(sub)
    assert_equal 1, sink.drops, "the sink is dropped once when the subscription is freed"

    # A subscription to a run that has already ended replays it (the run
    # waited for a worker: status.waiting first), then on_close.
    done = Lib::EventSink.new
    sub = subscribe_run(run_id, done)
    assert Lib.wait_until(TIMEOUT) { done.closes >= 1 }
    assert_equal types, done.drain_events.map { |e| e[1] }
    assert_equal "status.waiting", types.first
    free_subscription(sub)
    assert_equal 1, done.drops

    assert_equal :ok, stop_worker(worker)
    assert Lib.wait_until(TIMEOUT) { worker.handler.drops >= 1 }
    assert_equal 1, worker.handler.drops
  end

  def test_subscribe_all_only_sees_runs_matching_its_tags
    wf = "tagged-#{@suffix}"
    zone_a = "zone=a-#{@suffix}"
    zone_b = "zone=b-#{@suffix}"
    wa = start_worker("worker-a-#{@suffix}", [wf], tags: { "zone" => "a-#{@suffix}" }) { |_, _, i| i }
    wb = start_worker("worker-b-#{@suffix}", [wf], tags: { "zone" => "b-#{@suffix}" }) { |_, _, i| i }

    sink = Lib::EventSink.new
    sub = Lib.with_out do |out, err|
      Lib.blazen_controlplane_client_subscribe_all(@client, JSON.generate([zone_a]), sink.vtable, out, err)
    end
    @subscriptions << sub

    # A zone-b run first, so its events (were they not filtered) would come
    # before the zone-a run's.
    run_b = submit(wf, '{"zone":"b"}', tags: JSON.generate([zone_b])).run_id
    assert_equal RUN_STATUS_COMPLETED, wait_status(run_b).status
    assert_equal wb.node_id, describe_run(run_b).assigned_to
    run_a = submit(wf, '{"zone":"a"}', tags: JSON.generate([zone_a])).run_id
    assert_equal RUN_STATUS_COMPLETED, wait_status(run_a).status
    assert_equal wa.node_id, describe_run(run_a).assigned_to

    events = []
    assert Lib.wait_until(TIMEOUT) {
      sink.drain_events(events)
      events.any? { |e| e[0] == run_a && e[1] == "status.completed" }
    }, "subscribe_all delivers the zone-a run's completion"
    assert_equal [run_a], events.map(&:first).uniq, "only the zone-a run's events"

    Lib.blazen_controlplane_subscription_cancel(sub)
    Lib.blazen_controlplane_subscription_cancel(sub) # idempotent
    free_subscription(sub)
    assert Lib.wait_until(TIMEOUT) { sink.drops >= 1 }, "drop_user_data follows the free"
    assert_equal 1, sink.drops
    assert_equal 0, sink.closes, "a cancelled subscription gets no on_close"
    assert_equal 0, sink.errors

    [wa, wb].each do |w|
      assert_equal :ok, stop_worker(w)
      assert Lib.wait_until(TIMEOUT) { w.handler.drops >= 1 }
      assert_equal 1, w.handler.drops
    end
  end

  def test_cancelling_an_in_flight_run_reaches_on_cancel
    block_wf = "block-#{@suffix}"
    handler_done = Queue.new
    worker = nil
    worker = start_worker("blocker-#{@suffix}", [block_wf]) do |run_id, _, _|
      # Hold the run until the library reports it cancelled.
      seen = Lib.wait_until(TIMEOUT) { worker.handler.cancels >= 1 }
      handler_done << [run_id, seen]
      '"unblocked"'
    end

    run_id = submit(block_wf, "{}").run_id
    assert_equal RUN_STATUS_RUNNING, wait_status(run_id, RUN_STATUS_RUNNING).status
    snap = Lib.take_snapshot(Lib.with_out do |out, err|
      Lib.blazen_controlplane_client_cancel_workflow_blocking(@client, run_id, out, err)
    end)
    assert_equal run_id, snap.run_id

    assert_equal RUN_STATUS_CANCELLED, wait_status(run_id).status
    assert Lib.wait_until(TIMEOUT) { worker.handler.cancels >= 1 }, "on_cancel is called"
    assert_equal run_id, worker.handler.cancelled_runs.pop
    assert Lib.wait_until(TIMEOUT) { !handler_done.empty? }, "the handler returns"
    assert_equal [run_id, true], handler_done.pop
    assert_equal RUN_STATUS_CANCELLED, describe_run(run_id).status, "a late output does not revive it"

    assert_equal :ok, stop_worker(worker)
    assert Lib.wait_until(TIMEOUT) { worker.handler.drops >= 1 }
    assert_equal 1, worker.handler.drops
  end

  def test_drain_reaches_on_drain_and_ends_the_run_future
    err = assert_blazen_error(ERROR_KIND_PEER, "ghost-#{@suffix}") do
      Lib.with_error do |e|
        Lib.blazen_controlplane_client_drain_worker_blocking(@client, "ghost-#{@suffix}", false, e)
      end
    end
    refute_nil err.subkind

    node = "drained-#{@suffix}"
    worker = start_worker(node, ["drain-#{@suffix}"]) { |_, _, i| i }
    fut = Lib::Future.new(Lib.blazen_controlplane_client_drain_worker(@client, node, false))
    assert fut.wait_fd(TIMEOUT)
    assert_equal 0, fut.take_unit
    fut.free

    assert Lib.wait_until(TIMEOUT) { worker.handler.drains >= 1 }, "on_drain is called"
    assert worker.run_future.wait_poll(TIMEOUT), "the run future resolves after the drain"
    assert_equal 0, worker.run_future.take_unit, "run yields 0 after a drain"
    assert_equal 1, worker.handler.drops, "released when the run ended, before the worker is freed"

    worker.stopped = true
    Lib.blazen_controlplane_worker_shutdown(worker.ptr) # after the run: harmless
    worker.run_future.free
    Lib.blazen_controlplane_worker_free(worker.ptr)
    assert Lib.wait_until(TIMEOUT) { worker.handler.drops >= 1 }
    assert_equal 1, worker.handler.drops
  end
end

require_relative "test_context_options"
require_relative "test_teardown"
