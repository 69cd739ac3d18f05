# frozen_string_literal: true

# Handles owned the way the published Blazen gems (v0.5.x and v0.6.x) own
# them, then dropped in every state and collected. Those gems keep each
# handle's callbacks (`FFI::Function`s) only in instance variables of the
# Ruby object that owns the handle, pass `user_data` NULL, attach teardown
# without `blocking: true`, and free handles from `FFI::AutoPointer`
# finalizers: when an object is collected its callbacks may be freed before
# its handle's `_free` runs, so a `_free` that called back would jump into
# freed memory. The library must make no such call, in any order of close,
# drop and collection. A crash ends this process (the suite then has no
# closing line and a non-zero exit).
#
# This file attaches the functions itself, in the shape of the surface the
# loaded library reports (`blazen_surface()`), as those gems do:
#
#   ruby tests/ruby/test_gc_order.rb    (BLAZEN_CABI_LIB=path/to/.so, or the installed gem's)
#
# GC_ORDER_ROUNDS sets the rounds of the main loop (default 40).

require "minitest/autorun"
require "ffi"
require "json"
require "securerandom"

# The library, attached as the published gems attach it.
module Published
  extend FFI::Library

  LIBRARY = ENV.fetch("BLAZEN_CABI_LIB") do
    require "blazen"
    Blazen::Native::LIBRARY_PATH
  end
  ffi_lib LIBRARY

  begin
    attach_function :blazen_surface, [], :uint32
    V06 = blazen_surface == 6
  rescue FFI::NotFoundError # a library from before the surfaces: 0.5.x
    V06 = false
  end

  # The handler table of the loaded surface (same fields in both).
  class HandlerVTable < FFI::Struct
    layout :user_data, :pointer, :drop_user_data, :pointer, :handle, :pointer,
           :on_cancel, :pointer, :on_drain, :pointer
  end

  # The event sink.
  class SinkVTable < FFI::Struct
    layout :user_data, :pointer, :drop_user_data, :pointer, :on_event, :pointer,
           :on_close, :pointer, :on_error, :pointer
  end

  token = V06 ? [:string] : []
  attach_function :blazen_controlplane_server_start_blocking, %i[string pointer pointer], :int32, blocking: true
  attach_function :blazen_controlplane_server_endpoint, [:pointer], :pointer
  attach_function :blazen_string_free, [:pointer], :void
  attach_function :blazen_string_alloc, [:string], :pointer
  attach_function :blazen_error_free, [:pointer], :void
  attach_function :blazen_error_message, [:pointer], :pointer
  attach_function :blazen_controlplane_client_connect_blocking, [:string, *token, :pointer, :pointer], :int32,
                  blocking: true
  attach_function :blazen_controlplane_client_free, [:pointer], :void
  attach_function :blazen_controlplane_client_submit_workflow_blocking,
                  %i[pointer string string string bool pointer pointer], :int32, blocking: true
  attach_function :blazen_controlplane_client_drain_worker_blocking, %i[pointer string bool pointer], :int32,
                  blocking: true
  attach_function :blazen_run_state_snapshot_run_id, [:pointer], :pointer
  attach_function :blazen_run_state_snapshot_free, [:pointer], :void
  attach_function :blazen_controlplane_worker_new_blocking,
                  [:string, :string, :string, :string, :uint32, :uint64, *token, HandlerVTable.by_value,
                   :pointer, :pointer], :int32, blocking: true
  attach_function :blazen_controlplane_worker_run, [:pointer], :pointer
  attach_function :blazen_future_wait, [:pointer], :int32, blocking: true
  attach_function :blazen_future_take_unit, %i[pointer pointer], :int32
  attach_function :blazen_future_free, [:pointer], :void
  attach_function :blazen_controlplane_client_subscribe_run_events,
                  [:pointer, :string, SinkVTable.by_value, :pointer, :pointer], :int32, blocking: true
  attach_function :blazen_controlplane_client_subscribe_all,
                  [:pointer, :string, SinkVTable.by_value, :pointer, :pointer], :int32, blocking: true
  # Teardown, without `blocking: true`: the caller keeps the VM lock.
  attach_function :blazen_controlplane_subscription_cancel, [:pointer], :void
  attach_function :blazen_controlplane_subscription_free, [:pointer], :void
  attach_function :blazen_controlplane_worker_shutdown, [:pointer], :void
  attach_function :blazen_controlplane_worker_free, [:pointer], :void

  # Calls `blk` with out-slots; raises with the library's message on -1.
  def self.out
    slot = FFI::MemoryPointer.new(:pointer)
    err = FFI::MemoryPointer.new(:pointer)
    rc = yield slot, err
    if rc != 0
      e = err.read_pointer
      m = blazen_error_message(e)
      text = m.read_string
      blazen_string_free(m)
      blazen_error_free(e)
      raise text
    end
    slot.read_pointer
  end

  # A client; freed by its finalizer.
  class Client
    attr_reader :ptr

    def initialize(endpoint)
      args = V06 ? [endpoint, nil] : [endpoint]
      raw = Published.out { |o, e| Published.blazen_controlplane_client_connect_blocking(*args, o, e) }
      @ptr = FFI::AutoPointer.new(raw, Published.method(:blazen_controlplane_client_free))
    end

    def submit(workflow)
      snap = Published.out do |o, e|
        Published.blazen_controlplane_client_submit_workflow_blocking(@ptr, workflow, "{}", nil, true, o, e)
      end
      id = Published.blazen_run_state_snapshot_run_id(snap)
      Published.blazen_run_state_snapshot_free(snap)
      text = id.read_string
      Published.blazen_string_free(id)
      text
    end

    def drain(node)
      Published.out { |_, e| Published.blazen_controlplane_client_drain_worker_blocking(@ptr, node, false, e) }
    end
  end

  # A worker whose callbacks live only in its instance variables.
  class Worker
    attr_reader :node

    def initialize(endpoint, node, workflow, &block)
      @node = node
      @block = block
      params = V06 ? %i[pointer string string string pointer pointer pointer] : %i[pointer string string string pointer pointer]
      @handle = FFI::Function.new(:int32, params) do |_ud, _run, _wf, input, *rest|
        out = rest[-2]
        out.write_pointer(Published.blazen_string_alloc(JSON.generate(@block.call(JSON.parse(input)))))
        0
      end
      @drop = FFI::Function.new(:void, [:pointer]) { |_| nil }
      @on_cancel = FFI::Function.new(:void, %i[pointer string]) { |_, _| nil }
      @on_drain = FFI::Function.new(:void, %i[pointer bool]) { |_, _| nil }
      vt = HandlerVTable.new
      vt[:user_data] = nil
      vt[:drop_user_data] = @drop
      vt[:handle] = @handle
      vt[:on_cancel] = @on_cancel
      vt[:on_drain] = @on_drain
      caps = JSON.generate([{ kind: "workflow:#{workflow}", version: 0 }])
      token = V06 ? [nil] : []
      raw = Published.out do |o, e|
        Published.blazen_controlplane_worker_new_blocking(endpoint, node, caps, "{}", 0, 4, *token, vt, o, e)
      end
      @ptr = FFI::AutoPointer.new(raw, Published.method(:blazen_controlplane_worker_free))
    end

    # Runs until shut down or drained, on a thread of its own.
    def start
      @future = Published.blazen_controlplane_worker_run(@ptr)
      @thread = Thread.new(@future) { |f| Published.blazen_future_wait(f) }
      self
    end

    def join
      @thread&.join
      return unless @future

      err = FFI::MemoryPointer.new(:pointer)
      Published.blazen_future_take_unit(@future, err)
      Published.blazen_error_free(err.read_pointer)
      Published.blazen_future_free(@future)
      @future = nil
    end

    def shutdown = Published.blazen_controlplane_worker_shutdown(@ptr)
  end

  # A subscription whose sink lives only in its instance variables.
  class Subscription
    attr_reader :events

    def initialize(client, run_id = nil)
      @events = Queue.new
      @on_event = FFI::Function.new(:void, %i[pointer string string string uint64]) do |_, _, type, _, _|
        @events << type
      end
      @on_close = FFI::Function.new(:void, [:pointer]) { |_| @events << :closed }
      @on_error = FFI::Function.new(:void, %i[pointer string]) { |_, _| nil }
      @drop = FFI::Function.new(:void, [:pointer]) { |_| nil }
      vt = SinkVTable.new
      vt[:user_data] = nil
      vt[:drop_user_data] = @drop
      vt[:on_event] = @on_event
      vt[:on_close] = @on_close
      vt[:on_error] = @on_error
      raw = Published.out do |o, e|
        if run_id
          Published.blazen_controlplane_client_subscribe_run_events(client.ptr, run_id, vt, o, e)
        else
          Published.blazen_controlplane_client_subscribe_all(client.ptr, nil, vt, o, e)
        end
      end
      @ptr = FFI::AutoPointer.new(raw, Published.method(:blazen_controlplane_subscription_free))
    end

    # As the gems' Subscription#close: cancel, then free.
    def close
      Published.blazen_controlplane_subscription_cancel(@ptr)
      @ptr.free
    end
  end
end

class GcOrderTest < Minitest::Test
  ROUNDS = Integer(ENV.fetch("GC_ORDER_ROUNDS", "40"))

  def setup
    @server ||= begin
      raw = Published.out { |o, e| Published.blazen_controlplane_server_start_blocking("127.0.0.1:0", o, e) }
      ep = Published.blazen_controlplane_server_endpoint(raw)
      @endpoint = ep.read_string
      Published.blazen_string_free(ep)
      raw # never freed: it serves the whole process
    end
  end

  def collect
    3.times { GC.start(full_mark: true, immediate_sweep: true) }
  end

  def wait_for(queue, want, seconds = 20)
    deadline = Time.now + seconds
    until Time.now > deadline
      got = queue.empty? ? sleep(0.005) : queue.pop
      return true if got == want
    end
    false
  end

  # Runs the block with `GC.stress` on when `stress` (every allocation then
  # collects, so finalizers run at every possible moment).
  def stressed(stress)
    GC.stress = stress
    yield
  ensure
    GC.stress = false
  end

  # One round: a handle of each kind left in each state, all dropped, then
  # collected. With `stress`, the teardown calls and the drops run under
  # GC.stress.
  def one_round(round, stress: false)
    tag = "#{round}-#{SecureRandom.hex(3)}"
    client = Published::Client.new(@endpoint)
    wf = "gc-#{tag}"
    never = Published::Worker.new(@endpoint, "never-#{tag}", wf) { |i| i }
    shut = Published::Worker.new(@endpoint, "shut-#{tag}", wf) { |i| i }.start
    drained = Published::Worker.new(@endpoint, "drained-#{tag}", "#{wf}-d") { |i| i }.start
    slow = Published::Worker.new(@endpoint, "slow-#{tag}", "#{wf}-s") do |i|
      sleep 0.2
      i
    end.start
    running = [shut, drained, slow]
    trace = ->(what) { warn("round #{round}: #{what}") if ENV["GC_ORDER_TRACE"] }
    begin
      ended = Published::Subscription.new(client, client.submit(wf))
      assert wait_for(ended.events, :closed), "round #{round}: the run ended and its stream closed"
      trace.call("ended")
      client.submit("#{wf}-d")
      trace.call("submitted to the drained worker")
      client.drain("drained-#{tag}")
      trace.call("drain sent")
      drained.join
      trace.call("drained")
      mid = Published::Subscription.new(client, client.submit("#{wf}-s"))
      open = Published::Subscription.new(client) # dropped open: its finalizer frees it
      stressed(stress) { mid.close } # closed mid-stream: the run takes 200 ms
      refute wait_for(mid.events, :closed, 0.3), "round #{round}: a closed subscription gets no on_close"
    rescue Exception => e # rubocop:disable Lint/RescueException
      trace.call("#{e.class}: #{e.message}")
      raise
    ensure
      trace.call("shutting down")
      stressed(stress) { running.each(&:shutdown) }
      running.each(&:join)
      trace.call("joined")
    end
    stressed(stress) do
      never = ended = mid = open = client = shut = drained = slow = running = nil
      GC.start
    end
    [never, ended, mid, open, client, shut, drained, slow, running].compact.size
  end

  def test_published_ownership_survives_every_drop_and_collect_order
    ROUNDS.times do |round|
      one_round(round)
      collect if round.even? # the other rounds leave collection to the VM
    end
    collect
    assert true, "#{ROUNDS} rounds of drop-then-collect in every state survived"
  end

  # The published gems' everyday pattern: wait for the run's terminal
  # event, close the subscription, collect. At the close the library had
  # often entered `on_close` already (waiting for the VM lock), and by the
  # time it ran the gem had let its callback be freed: a crash in one process
  # of three at 150 rounds here, until `on_close` waited for a cancel first.
  def test_close_and_collect_right_after_the_terminal_event
    client = Published::Client.new(@endpoint)
    wf = "term-#{SecureRandom.hex(3)}"
    worker = Published::Worker.new(@endpoint, "w-#{wf}", wf) { |i| i }.start
    300.times do |round|
      sub = Published::Subscription.new(client, client.submit(wf))
      assert wait_for(sub.events, "status.completed"), "round #{round}: the terminal event"
      sub.close
      sub = nil
      GC.start
    end
  ensure
    worker&.shutdown
    worker&.join
  end

  def test_the_same_under_gc_stress
    3.times do |round|
      one_round(1000 + round, stress: true)
      collect
    end
  end
end
