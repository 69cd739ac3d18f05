# frozen_string_literal: true

# A small, real Fiber::Scheduler (IO.select based) for the tests: it runs
# fibers that wait on IO, sleep or block on Ruby's primitives, and counts
# how often a fiber waited on a descriptor.
class TinyScheduler
  attr_reader :io_waits

  def initialize
    @readable = {} # io => fiber
    @timers = {}   # fiber => deadline
    @ready = Queue.new
    @blocked = 0
    @io_waits = 0
    @wake_r, @wake_w = IO.pipe
  end

  def fiber(&block)
    f = Fiber.new(blocking: false, &block)
    f.resume
    f
  end

  def io_wait(io, events, timeout)
    @io_waits += 1
    @readable[io] = Fiber.current
    @timers[Fiber.current] = now + timeout if timeout
    Fiber.yield
    @readable.delete(io)
    @timers.delete(Fiber.current)
    events
  end

  def kernel_sleep(duration = nil)
    @timers[Fiber.current] = now + (duration || 0)
    Fiber.yield
  end

  def block(_blocker, timeout = nil)
    @blocked += 1
    @timers[Fiber.current] = now + timeout if timeout
    Fiber.yield
  ensure
    @blocked -= 1
    @timers.delete(Fiber.current)
  end

  def unblock(_blocker, fiber)
    @ready << fiber
    @wake_w.write_nonblock(".", exception: false)
  end

  def close
    run
    @wake_r.close
    @wake_w.close
  end

  private

  def now = Process.clock_gettime(Process::CLOCK_MONOTONIC)

  def run
    until @readable.empty? && @timers.empty? && @ready.empty? && @blocked.zero?
      wait = @timers.values.min
      timeout = wait ? [wait - now, 0].max : nil
      ios, = IO.select(@readable.keys + [@wake_r], nil, nil, timeout)
      (ios || []).each do |io|
        if io == @wake_r
          @wake_r.read_nonblock(64, exception: false)
        elsif (f = @readable.delete(io))
          f.resume
        end
      end
      @ready.pop.resume until @ready.empty?
      due = @timers.select { |_, t| t <= now }.keys
      due.each { |f| @timers.delete(f) && f.resume }
    end
  end
end
