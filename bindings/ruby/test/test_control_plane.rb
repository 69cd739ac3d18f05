# frozen_string_literal: true

# The gem's own suite: every public method of Blazen::ControlPlane against
# an embedded control plane, run against the gem as installed (no -Ilib).
#
#   GEM_HOME=... ruby bindings/ruby/test/test_control_plane.rb

require "minitest/autorun"
require "securerandom"
require "timeout"
require "blazen"
require_relative "tiny_scheduler"

CP = Blazen::ControlPlane
ENV.delete("BLAZEN_PEER_TOKEN")
SERVER = CP::Server.start
Minitest.after_run do
  SERVER.shutdown
  SERVER.close
end

class ControlPlaneTest < Minitest::Test
  WAIT = 20

  def setup
    @client = CP::Client.connect(SERVER.endpoint)
    @id = SecureRandom.hex(4)
    @workers = []
  end

  def teardown
    @workers.each do |w, t|
      w.shutdown
      t&.join(WAIT)
      w.close
    end
    @client.close
  end

  def wait_until(timeout = WAIT)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
    until (v = yield)
      return v if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

      sleep 0.01
    end
    v
  end

  # Starts a worker serving `workflow` on a thread and waits until it is listed.
  def serve(workflow, node: "w-#{workflow}", **kwargs, &block)
    w = CP::Worker.new(endpoint: SERVER.endpoint, node_id: node,
                       capabilities: [{ kind: "workflow:#{workflow}", version: 0 }], **kwargs, &block)
    t = Thread.new { w.run }
    @workers << [w, t]
    assert wait_until { @client.list_workers.any? { |i| i[:node_id] == node } }, "#{node} listed"
    w
  end

  def finished(run_id)
    wait_until { (s = @client.describe_workflow(run_id))[:status] != :pending && s[:status] != :running && s }
  end

  # ---- module ---------------------------------------------------------------

  def test_available_and_constants
    assert CP.available?
    assert_nil CP.ensure_available!
    assert_equal [0, 1, 2, 3, 4], [CP::PENDING, CP::RUNNING, CP::COMPLETED, CP::FAILED, CP::CANCELLED]
    assert_operator Blazen::Native::FUNCTIONS.size, :>, 90
  end

  def test_error_hierarchy_matches_the_kind_constants
    names = %w[AuthError RateLimitError TimeoutError ValidationError ContentPolicyError UnsupportedError
               ComputeError MediaError ProviderError WorkflowError ToolError PeerError PersistError
               PromptError MemoryError CacheError CancelledError InternalError]
    names.each do |n|
      klass = Blazen.const_get(n)
      assert_operator klass, :<, Blazen::Error
      assert_equal klass, Blazen::Error.for_kind(klass::KIND)
    end
    assert_operator Blazen::Error, :<, StandardError
  end

  # ---- server ------------------------------------------------------------------

  def test_server_block_form_token_and_shutdown
    endpoint = nil
    CP::Server.start("127.0.0.1:0", bearer_token: "s3cret") do |s|
      endpoint = s.endpoint
      assert_match(%r{\Ahttp://127\.0\.0\.1:\d+\z}, endpoint)
      assert_equal endpoint.split(":").last.to_i, s.port
      c = CP::Client.connect(endpoint, bearer_token: "s3cret")
      assert_equal [], c.list_workers
      c.close
      wrong = CP::Client.connect(endpoint, bearer_token: "wrong")
      err = assert_raises(Blazen::PeerError) { wrong.list_workers }
      assert_equal "ControlPlaneUnauthenticated", err.kind
      wrong.close
    end
    err = assert_raises(Blazen::PeerError) { CP::Client.connect_blocking(endpoint).list_workers }
    refute_nil err.subkind
  end

  def test_server_bad_input
    err = assert_raises(Blazen::ValidationError) { CP::Server.start("not an address") }
    assert_includes err.message, "bind_addr"
    err = assert_raises(Blazen::ValidationError) { CP::Server.start("127.0.0.1:0", colour: "red") }
    assert_includes err.message, "options_json"
    err = assert_raises(Blazen::ValidationError) { CP::Server.start("127.0.0.1:0", store_url: "http://x") }
    assert_includes err.message, "store_url"
    err = assert_raises(Blazen::ValidationError) { CP::Server.start("127.0.0.1:0", finished_ttl_ms: 1000) }
    assert_includes err.message, "store_url"
  end

  def test_server_unreachable_store
    err = assert_raises(Blazen::PeerError) { CP::Server.start("127.0.0.1:0", store_url: "redis://127.0.0.1:1/0") }
    assert_equal "ControlPlaneStore", err.subkind
    assert_includes err.message, "127.0.0.1:1"
  end

  # ---- client ------------------------------------------------------------------

  def test_connect_variants
    c = CP::Client.connect_blocking(SERVER.endpoint)
    assert_kind_of Array, c.list_workers
    c.close
    c = CP::Client.connect_with_options(SERVER.endpoint, connect_timeout_ms: 2000)
    assert_kind_of Array, c.list_workers
    c.close
    err = assert_raises(Blazen::ValidationError) { CP::Client.connect(SERVER.endpoint, nonsense: 1) }
    assert_includes err.message, "options_json"
    assert_raises(Blazen::Error) { CP::Client.connect("http://127.0.0.1:1").list_workers }
  end

  def test_mtls_connect_and_worker
    certs = ENV.fetch("BLAZEN_TEST_CERTS", nil)
    skip "BLAZEN_TEST_CERTS is not set" unless certs && File.exist?(File.join(certs, "server.pem"))
    tls = { cert_path: File.join(certs, "server.pem"), key_path: File.join(certs, "server.key"),
            ca_path: File.join(certs, "ca.pem") }
    client_tls = { cert_path: File.join(certs, "client.pem"), key_path: File.join(certs, "client.key"),
                   ca_path: File.join(certs, "ca.pem") }
    CP::Server.start("127.0.0.1:0", **tls) do |s|
      ep = s.endpoint.sub("127.0.0.1", "localhost")
      c = CP::Client.connect_with_mtls(ep, **client_tls)
      assert_equal [], c.list_workers
      c2 = CP::Client.connect_with_mtls_blocking(ep, **client_tls)
      w = CP::Worker.new_with_mtls(endpoint: ep, node_id: "tls-#{@id}", **client_tls,
                                   capabilities: [{ kind: "workflow:tls#{@id}", version: 0 }]) { |a| a[:input] }
      t = Thread.new { w.run }
      assert wait_until { c2.list_workers.any? }
      snap = c2.submit_workflow(workflow_name: "tls#{@id}", input: [1])
      c2.run_events(snap[:run_id]).to_a
      assert_equal [1], c2.describe_workflow(snap[:run_id])[:output]
      w.shutdown
      t.join
      w.close
      c.close
      c2.close
    end
  end

  def test_submit_describe_cancel_list_and_records
    serve("echo#{@id}", tags: { "zone" => "eu" }, admission: :fixed, admission_param: 3) do |a|
      { "echo" => a[:input], "wf" => a[:workflow_name] }
    end
    snap = @client.submit_workflow(workflow_name: "echo#{@id}", input: { "n" => 1 }, required_tags: ["zone=eu"])
    assert_match(/\A\h{8}-/, snap[:run_id])
    assert_includes %i[pending running completed], snap[:status]
    done = finished(snap[:run_id])
    assert_equal :completed, done[:status]
    assert_equal({ "echo" => { "n" => 1 }, "wf" => "echo#{@id}" }, done[:output])
    assert_kind_of Integer, done[:completed_at_ms]
    assert_equal "w-echo#{@id}", done[:assigned_to]
    assert_nil done[:error]

    info = @client.list_workers.find { |i| i[:node_id] == "w-echo#{@id}" }
    assert_equal [{ "kind" => "workflow:echo#{@id}", "version" => 0 }], info[:capabilities]
    assert_equal({ "zone" => "eu" }, info[:tags])
    assert_equal({ "mode" => "Fixed", "max_in_flight" => 3 }, info[:admission])
    assert_kind_of Integer, info[:in_flight]
    assert_operator info[:connected_at_ms], :>, 0

    pending = @client.submit_workflow(workflow_name: "nobody#{@id}", input: nil)
    assert_equal :pending, pending[:status]
    assert_equal :cancelled, @client.cancel_workflow(pending[:run_id])[:status]
    err = assert_raises(Blazen::PeerError) do
      @client.submit_workflow(workflow_name: "nobody#{@id}", wait_for_worker: false)
    end
    assert_equal "ControlPlaneFailedPrecondition", err.kind
  end

  def test_submit_with_options
    serve("opt#{@id}") { |a| a[:input] }
    snap = @client.submit_workflow(workflow_name: "opt#{@id}", input: 5, idempotency_key: "k-#{@id}",
                                   resource_hint: { cpu_cores: 1 })
    assert_equal 5, finished(snap[:run_id])[:output]
    err = assert_raises(Blazen::ValidationError) do
      @client.submit_workflow(workflow_name: "opt#{@id}", colour: "red")
    end
    assert_includes err.message, "options_json"
  end

  def test_bad_input_names_the_argument
    err = assert_raises(Blazen::ValidationError) { @client.describe_workflow("not-a-uuid") }
    assert_includes err.message, "run_id"
    err = assert_raises(Blazen::ValidationError) { @client.cancel_workflow("\xff".b) }
    assert_includes err.message, "run_id"
    err = assert_raises(Blazen::ValidationError) { @client.submit_workflow(workflow_name: nil) }
    assert_includes err.message, "workflow_name"
    err = assert_raises(Blazen::ValidationError) { @client.subscribe_all(required_tags: [3]) { nil } }
    assert_includes err.message, "required_tags_json"
    assert_raises(ArgumentError) { @client.subscribe_all }
    assert_raises(ArgumentError) { @client.subscribe_run_events(SecureRandom.uuid) }
    assert_raises(ArgumentError) { CP::Worker.new(endpoint: SERVER.endpoint, node_id: "x") }
    assert_raises(ArgumentError) do
      CP::Worker.new(endpoint: SERVER.endpoint, node_id: "x", handler: Object.new) { nil }
    end
    err = assert_raises(Blazen::ValidationError) do
      CP::Worker.new(endpoint: SERVER.endpoint, node_id: "x", admission: :greedy) { nil }
    end
    assert_includes err.message, "admission"
    err = assert_raises(Blazen::ValidationError) do
      CP::Worker.new(endpoint: SERVER.endpoint, node_id: "x", colour: "red") { nil }
    end
    assert_includes err.message, "options_json"
    err = assert_raises(Blazen::PeerError) { @client.drain_worker("ghost-#{@id}") }
    refute_nil err.kind
  end

  def test_handler_that_raises_fails_the_run
    serve("boom#{@id}") do |a|
      raise Blazen::TimeoutError, "too slow" if a[:input] == "t"

      raise "boom from Ruby"
    end
    snap = finished(@client.submit_workflow(workflow_name: "boom#{@id}", input: "x")[:run_id])
    assert_equal :failed, snap[:status]
    assert_includes snap[:error], "boom from Ruby"
    snap = finished(@client.submit_workflow(workflow_name: "boom#{@id}", input: "t")[:run_id])
    assert_includes snap[:error], "too slow"
  end

  def test_handler_object_with_notifications_and_drain
    obj = Class.new do
      attr_reader :cancelled, :drained

      def initialize
        @cancelled = Queue.new
        @drained = Queue.new
      end

      def handle(assignment)
        sleep 0.02 while assignment[:input] == "block" && @cancelled.empty?
        "ok"
      end

      def on_cancel(run_id) = @cancelled << run_id
      def on_drain(immediate) = @drained << immediate
    end.new
    w = serve("obj#{@id}", handler: obj)
    snap = @client.submit_workflow(workflow_name: "obj#{@id}", input: "block")
    assert wait_until { @client.describe_workflow(snap[:run_id])[:status] == :running }
    @client.cancel_workflow(snap[:run_id])
    assert_equal snap[:run_id], obj.cancelled.pop
    @client.drain_worker(w.node_id, immediate: false)
    assert_equal false, obj.drained.pop
  end

  def test_context_emit_event_and_request_input
    serve("ctx#{@id}") do |a, ctx|
      raise "ctx run id" unless ctx.run_id == a[:run_id]

      ctx.emit_event("progress", { "attempt" => ctx.attempt, "cancelled" => ctx.cancelled? })
      ctx.request_input("Approve?", { "level" => 2 }, timeout_ms: 20_000)
    end
    # Subscribed before the submission, so no event can be missed.
    queue = Queue.new
    sub = @client.subscribe_all { |ev| queue << ev }
    snap = @client.submit_workflow(workflow_name: "ctx#{@id}", input: {})
    events = []
    loop do
      ev = queue.pop
      next unless ev[:run_id] == snap[:run_id]

      events << ev
      if ev[:event_type] == "input.request"
        @client.respond_to_input(snap[:run_id], ev[:data]["request_id"], { "approved" => true })
      end
      break if CP::TERMINAL_EVENTS.include?(ev[:event_type])
    end
    sub.close
    types = events.map { |e| e[:event_type] }
    assert_includes types, "progress"
    assert_equal "status.completed", types.last
    progress = events.find { |e| e[:event_type] == "progress" }
    assert_equal false, progress[:data]["cancelled"]
    assert_equal({ "approved" => true }, @client.describe_workflow(snap[:run_id])[:output])
  end

  # Code written for the published v0.6.x gem: `bearer_token:` on every
  # connect form (nil, or a token), a two-argument block whose context is a
  # `Worker::AssignmentContext`, `emit_event(type)` and `request_input(prompt)`
  # with the v0.6 defaults, on either build (`Blazen::Native::SURFACE`).
  def test_the_v0_6_gem_api
    classes = Queue.new
    serve("v06#{@id}", bearer_token: nil) do |a, ctx|
      classes << ctx.class
      ctx.emit_event("started")
      { "answer" => ctx.request_input("Go?"), "input" => a[:input] }
    end
    assert_equal CP::Worker::AssignmentContext, CP::AssignmentContext
    c = CP::Client.connect_blocking(SERVER.endpoint, bearer_token: nil)
    queue = Queue.new
    sub = c.subscribe_all { |ev| queue << ev }
    snap = c.submit_workflow(workflow_name: "v06#{@id}", input: [1])
    loop do
      ev = queue.pop
      next unless ev[:run_id] == snap[:run_id]

      assert_nil ev[:data] if ev[:event_type] == "started"
      c.respond_to_input(snap[:run_id], ev[:data]["request_id"], "yes") if ev[:event_type] == "input.request"
      break if CP::TERMINAL_EVENTS.include?(ev[:event_type])
    end
    sub.close
    assert_equal({ "answer" => "yes", "input" => [1] }, c.describe_workflow(snap[:run_id])[:output])
    assert_equal CP::Worker::AssignmentContext, classes.pop
    assert_equal "Blazen::ControlPlane::Worker::AssignmentContext", CP::Worker::AssignmentContext.name
    c.close
    CP::Server.start("127.0.0.1:0", bearer_token: "t0k") do |s|
      [CP::Client.connect(s.endpoint, bearer_token: "t0k"),
       CP::Client.connect_blocking(s.endpoint, bearer_token: "t0k")].each do |ok|
        assert_equal [], ok.list_workers
        ok.close
      end
      bad = CP::Client.connect_blocking(s.endpoint, bearer_token: "nope")
      assert_equal "ControlPlaneUnauthenticated", assert_raises(Blazen::PeerError) { bad.list_workers }.kind
      bad.close
    end
    assert_includes [Blazen::Native::SURFACE_V0_5, Blazen::Native::SURFACE_V0_6], Blazen::Native::SURFACE
  end

  def test_run_events_enumerates_until_the_terminal_event
    serve("enum#{@id}") do |a|
      sleep 0.1
      a[:input]
    end
    snap = @client.submit_workflow(workflow_name: "enum#{@id}", input: 3)
    events = @client.run_events(snap[:run_id]).to_a
    assert_equal "status.completed", events.last[:event_type]
    assert_equal({ "output" => 3 }, events.last[:data])
    # A finished run is replayed, its terminal event last.
    assert_equal %w[status.running status.completed], @client.run_events(snap[:run_id]).map { |e| e[:event_type] }
  end

  # A stream that ends before `on_end` is given its block still reaches
  # it (run_events sets it after subscribing; a finished run's replay can
  # end the stream in between, which used to leave run_events waiting).
  def test_an_end_before_on_end_is_kept_for_it
    serve("early#{@id}") { |a| a[:input] }
    run = @client.submit_workflow(workflow_name: "early#{@id}", input: 1)
    finished(run[:run_id])
    seen = Queue.new
    sub = @client.subscribe_run_events(run[:run_id]) { |ev| seen << ev[:event_type] }
    assert wait_until { seen.size >= 2 }, "the replay arrived"
    sleep 0.2 # the close follows the terminal event
    ends = Queue.new
    sub.on_end { |error| ends << (error || :closed) }
    assert_equal :closed, Timeout.timeout(5) { ends.pop }
    sub.close
    3.times { assert_equal "status.completed", @client.run_events(run[:run_id]).to_a.last[:event_type] }
  end

  # The README's pattern (submit, then enumerate the run's events) sees
  # every event of every run, the input request included, because a run
  # subscription starts with what the run has emitted so far.
  def test_submit_then_run_events_sees_every_event
    serve("hitl#{@id}", admission: :fixed, admission_param: 4) do |_a, ctx|
      ctx.emit_event("progress", { "step" => 1 })
      ctx.request_input("Approve?", nil, timeout_ms: 20_000)
    end
    20.times do |i|
      run = @client.submit_workflow(workflow_name: "hitl#{@id}", input: {})
      types = @client.run_events(run[:run_id]).map do |ev|
        @client.respond_to_input(run[:run_id], ev[:data]["request_id"], i) if ev[:event_type] == "input.request"
        ev[:event_type]
      end
      assert_equal %w[input.request progress status.completed status.running], types.sort, "run #{i}"
      assert_equal "status.completed", types.last
      assert_equal i, @client.describe_workflow(run[:run_id])[:output]
    end
  end

  # Answers to requests a run never raised, and runs nobody can take, are
  # not silent.
  def test_unknown_input_requests_and_waiting_runs_are_named
    serve("asks#{@id}") { |_a, ctx| ctx.request_input("Go?", nil, timeout_ms: 20_000) }
    run = @client.submit_workflow(workflow_name: "asks#{@id}", input: {})
    events = @client.run_events(run[:run_id])
    request = events.find { |ev| ev[:event_type] == "input.request" }[:data]["request_id"]
    err = assert_raises(Blazen::PeerError) { @client.respond_to_input(run[:run_id], "nope", 1) }
    assert_equal "ControlPlaneNotFound", err.kind
    assert_includes err.message, request
    @client.respond_to_input(run[:run_id], request, 1)
    assert_equal 1, finished(run[:run_id])[:output]

    waiting = @client.submit_workflow(workflow_name: "nobody#{@id}", input: {}, wait_for_worker: true)
    first = @client.run_events(waiting[:run_id]).first
    assert_equal "status.waiting", first[:event_type]
    assert_equal "workflow:nobody#{@id}", first[:data]["capability"]
    @client.cancel_workflow(waiting[:run_id])
  end

  def test_run_blocking_and_shutdown_idempotent
    w = CP::Worker.new(endpoint: SERVER.endpoint, node_id: "rb-#{@id}",
                       capabilities: [{ kind: "workflow:rb#{@id}", version: 0 }]) { |a| a[:input] }
    t = Thread.new { w.run_blocking }
    assert wait_until { @client.list_workers.any? { |i| i[:node_id] == "rb-#{@id}" } }
    w.shutdown
    w.shutdown
    assert_nil t.value
    w.close
    w.close
    assert_raises(ArgumentError) { w.run }
  end

  # ---- subscriptions ------------------------------------------------------------

  def test_subscriptions_deliver_and_a_raising_block_does_not_stop_the_stream
    serve("sub#{@id}") { |a| a[:input] }
    seen = Queue.new
    raised = 0
    all = @client.subscribe_all do |ev|
      seen << ev
      raised += 1
      raise "a block that raises" if raised == 1
    end
    ended = Queue.new
    snap = @client.submit_workflow(workflow_name: "sub#{@id}", input: 1)
    per_run = @client.subscribe_run_events(snap[:run_id]) { |ev| seen << ev }
    per_run.on_end { |e| ended << (e || :clean) }
    assert_equal :clean, ended.pop
    3.times { @client.submit_workflow(workflow_name: "sub#{@id}", input: 2) }
    assert wait_until { seen.size >= 4 }, "events keep coming after the block raised"
    all.cancel
    all.cancel
    all.close
    all.close
    per_run.close
    assert all.closed?
    assert all.wait_finished(WAIT), "the library released the block"
    event = seen.pop
    assert_equal %i[run_id event_type data timestamp_ms], event.keys
  end

  def test_close_and_drop_while_callbacks_run
    serve("busy#{@id}") do |a|
      sleep 0.2
      a[:input]
    end
    10.times do
      in_block = Queue.new
      sub = @client.subscribe_all do |_|
        in_block << true
        sleep 0.05
      end
      @client.submit_workflow(workflow_name: "busy#{@id}", input: 1)
      in_block.pop
      t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      sub.close
      assert_operator Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0, :<, 1.0
      assert sub.wait_finished(WAIT)
    end
    started = Queue.new
    w = CP::Worker.new(endpoint: SERVER.endpoint, node_id: "drop-#{@id}",
                       capabilities: [{ kind: "workflow:drop#{@id}", version: 0 }]) do |_|
      started << true
      sleep 0.3
      1
    end
    t = Thread.new { w.run }
    assert wait_until { @client.list_workers.any? { |i| i[:node_id] == "drop-#{@id}" } }
    snap = @client.submit_workflow(workflow_name: "drop#{@id}")
    started.pop
    t0 = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    w.close
    assert_operator Process.clock_gettime(Process::CLOCK_MONOTONIC) - t0, :<, 1.0
    t.join(WAIT)
    assert wait_until { @client.describe_workflow(snap[:run_id])[:status] != :running }
    @client.cancel_workflow(snap[:run_id])
  end

  def test_garbage_collection_of_unclosed_handles
    serve("gc#{@id}") { |a| a[:input] }
    counter = Queue.new
    5.times do
      c = CP::Client.connect(SERVER.endpoint)
      c.subscribe_all { |_| counter << 1 }
      CP::Worker.new(endpoint: SERVER.endpoint, node_id: "gc-w-#{SecureRandom.hex(2)}") { |a| a }
    end
    4.times { GC.start(full_mark: true, immediate_sweep: true) }
    @client.submit_workflow(workflow_name: "gc#{@id}", input: 1)
    assert_kind_of Array, @client.list_workers
  end

  # ---- Fiber scheduler -------------------------------------------------------------

  def test_waits_yield_to_other_fibers_under_a_fiber_scheduler
    w = CP::Worker.new(endpoint: SERVER.endpoint, node_id: "fib-#{@id}",
                       capabilities: [{ kind: "workflow:fib#{@id}", version: 0 }]) { |a| a[:input] * 2 }
    scheduler = TinyScheduler.new
    order = []
    output = nil
    Thread.new do
      Fiber.set_scheduler(scheduler)
      Fiber.schedule do
        w.run # waits on the future's descriptor: the other fiber runs meanwhile
        order << :run_returned
      end
      Fiber.schedule do
        c = CP::Client.connect(SERVER.endpoint)
        sleep 0.01 until c.list_workers.any? { |i| i[:node_id] == "fib-#{@id}" }
        snap = c.submit_workflow(workflow_name: "fib#{@id}", input: 7)
        sleep 0.01 until (done = c.describe_workflow(snap[:run_id]))[:status] == :completed
        output = done[:output]
        order << :shutdown
        w.shutdown
        c.close
      end
    end.join
    w.close
    assert_equal 14, output
    assert_equal %i[shutdown run_returned], order
    assert_operator scheduler.io_waits, :>=, 1, "waits went through IO#wait_readable"
  end
end
